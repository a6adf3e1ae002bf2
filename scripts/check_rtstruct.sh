#!/usr/bin/env bash
# Validates an RT Structure Set written by medico: dciodvfy (Debian package dicom3tools: the IOD's required
# attributes and their values) reports no error, and pydicom and dicompyler-core (PyPI) read back the ROI
# names and contour counts medico wrote. Not part of CI (needs apt and PyPI); the Rust tests
# (io/tests/rtstruct_roundtrip.rs) check the round trip and the references without them.
#   bash scripts/check_rtstruct.sh RTSTRUCT.dcm
# Installs what is missing: dicom3tools with apt-get (root), pydicom 2.4.4 (dicompyler-core 0.5.6 imports
# pydicom's read_file, gone in pydicom 3) + dicompyler-core 0.5.6 + numpy
# into .deps/rt-venv. Uses target/release/medico-cli (or $MEDICO_CLI).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rtstruct=$1
cli=${MEDICO_CLI:-$ROOT/target/release/medico-cli}
venv="$ROOT/.deps/rt-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check pydicom==2.4.4 dicompyler-core==0.5.6 numpy
fi
bash "$ROOT/scripts/dciodvfy_check.sh" "$rtstruct"
echo "== pydicom, dicompyler-core"
info=$(mktemp)
trap 'rm -f "$info"' EXIT
"$cli" info --json "$rtstruct" >"$info"
"$venv/bin/python" "$ROOT/scripts/check_rtstruct.py" "$rtstruct" "$info"
