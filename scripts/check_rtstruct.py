#!/usr/bin/env python3
"""Reads an RT Structure Set medico wrote with pydicom and dicompyler-core and compares the ROI names and
contour counts each finds with what medico says it wrote (`medico-cli info --json`).

    python3 scripts/check_rtstruct.py RTSTRUCT.dcm MEDICO_INFO.json
"""
import json
import sys

import pydicom
from dicompylercore import dicomparser


def main():
    path, info_path = sys.argv[1:3]
    with open(info_path) as f:
        written = {r["name"]: r["contours"] for r in json.load(f)["structure_set"]["rois"]}
    ds = pydicom.dcmread(path)
    assert ds.Modality == "RTSTRUCT", ds.Modality
    names = {r.ROINumber: r.ROIName for r in ds.StructureSetROISequence}
    by_pydicom = {names[c.ReferencedROINumber]: len(getattr(c, "ContourSequence", [])) for c in ds.ROIContourSequence}
    parser = dicomparser.DicomParser(path)
    structures = parser.GetStructures()
    by_dicompyler = {}
    for number, structure in structures.items():
        planes = parser.GetStructureCoordinates(number) or {}
        by_dicompyler[structure["name"]] = sum(len(contours) for contours in planes.values())
    print("medico:         ", written)
    print("pydicom:        ", by_pydicom)
    print("dicompyler-core:", by_dicompyler)
    if not (written == by_pydicom == by_dicompyler):
        sys.exit("the ROI names or contour counts differ")
    print("pydicom and dicompyler-core read the ROIs and contours medico wrote")


if __name__ == "__main__":
    main()
