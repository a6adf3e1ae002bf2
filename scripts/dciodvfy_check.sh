#!/usr/bin/env bash
# dciodvfy (Debian's dicom3tools, installed with apt-get when missing) on a DICOM object medico wrote: prints
# its report and fails on any line starting with "Error". Shared by check_dicom_seg.sh and check_rtstruct.sh.
#   bash scripts/dciodvfy_check.sh OBJECT.dcm
set -euo pipefail
object=$1
if ! command -v dciodvfy >/dev/null; then
  apt-get install -y -q dicom3tools >/dev/null
fi
echo "== dciodvfy $object"
report=$(dciodvfy "$object" 2>&1)
echo "$report"
if echo "$report" | grep -q '^Error'; then
  echo "dciodvfy: errors" >&2
  exit 1
fi
echo "dciodvfy: no errors"
