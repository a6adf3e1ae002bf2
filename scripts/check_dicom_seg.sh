#!/usr/bin/env bash
# Validates a DICOM SEG written by medico with the two tools hospitals' DICOM people use: dciodvfy (Debian
# package dicom3tools: the IOD's required attributes and their values) and highdicom (PyPI; reads it as a
# Segmentation and resolves its source references). Not part of CI (needs apt and PyPI); the Rust tests check
# the round trip and the key attributes without them.
#   bash scripts/check_dicom_seg.sh SEG.dcm SOURCE_DICOM_FILE_OR_FOLDER
# Installs what is missing: dicom3tools with apt-get (root), highdicom 0.28.2 + pydicom 3.0.2 into
# .deps/highdicom-venv.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seg=$1 source=$2
venv="$ROOT/.deps/highdicom-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check highdicom==0.28.2 pydicom==3.0.2
fi
bash "$ROOT/scripts/dciodvfy_check.sh" "$seg"
echo "== highdicom"
"$venv/bin/python" "$ROOT/scripts/check_dicom_seg.py" "$seg" "$source"
