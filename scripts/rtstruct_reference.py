#!/usr/bin/env python3
"""The reference rasterisation of an RT Structure Set ROI onto one CT slice, independent of medico: pydicom
reads the files, numpy fills the polygons (pixel centres inside an odd number of the slice's contours).

    python3 scripts/rtstruct_reference.py RTSS.dcm CT_SLICE.dcm ROI_NAME OUT.json

Needs pydicom (3.0.2 and 2.4.4 give the same file) and numpy. Writes the mask as row runs, {"rows", "columns", "roi",
"contours", "runs": [[row, first_column, last_column_exclusive], ...]}, which
io/tests/rtstruct_roundtrip.rs compares medico's rasterisation with
(io/tests/data/rtstruct/rtss_body_on_ct0.json was made by this script from the shared rtss.dcm and ct.0.dcm).
"""
import json
import sys

import numpy as np
import pydicom


def slice_contours(rtss, ct, roi_name):
    """The ROI's closed planar contours on the CT slice, as (column, row) pixel coordinates."""
    number = next(r.ROINumber for r in rtss.StructureSetROISequence if r.ROIName == roi_name)
    contours = next(c for c in rtss.ROIContourSequence if c.ReferencedROINumber == number)
    origin = np.array(ct.ImagePositionPatient, dtype=float)
    row_dir = np.array(ct.ImageOrientationPatient[:3], dtype=float)
    col_dir = np.array(ct.ImageOrientationPatient[3:], dtype=float)
    normal = np.cross(row_dir, col_dir)
    row_spacing, col_spacing = (float(v) for v in ct.PixelSpacing)
    thickness = float(getattr(ct, "SliceThickness", 1.0) or 1.0)
    polygons = []
    for contour in contours.ContourSequence:
        if contour.ContourGeometricType != "CLOSED_PLANAR":
            continue
        points = np.array(contour.ContourData, dtype=float).reshape(-1, 3) - origin
        referenced = [i.ReferencedSOPInstanceUID for i in getattr(contour, "ContourImageSequence", [])]
        on_slice = ct.SOPInstanceUID in referenced or np.all(np.abs(points @ normal) < thickness / 4)
        if not on_slice:
            continue
        polygons.append(np.stack([points @ row_dir / col_spacing, points @ col_dir / row_spacing], axis=1))
    return polygons


def fill(polygons, rows, columns):
    """Even-odd point-in-polygon test of every pixel centre (ray towards +x)."""
    ys, xs = np.mgrid[0:rows, 0:columns].astype(float)
    inside = np.zeros((rows, columns), dtype=bool)
    for polygon in polygons:
        for (xa, ya), (xb, yb) in zip(polygon, np.roll(polygon, -1, axis=0)):
            if ya == yb:
                continue
            spans = (ya <= ys) != (yb <= ys)
            crossing = xa + (ys - ya) * (xb - xa) / (yb - ya)
            inside ^= spans & (xs < crossing)
    return inside


def runs(mask):
    out = []
    for row, line in enumerate(mask):
        padded = np.concatenate([[False], line, [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(padded))
        out.extend([row, int(a), int(b)] for a, b in zip(edges[::2], edges[1::2]))
    return out


def main():
    rtss_path, ct_path, roi, out_path = sys.argv[1:5]
    rtss, ct = pydicom.dcmread(rtss_path), pydicom.dcmread(ct_path)
    polygons = slice_contours(rtss, ct, roi)
    mask = fill(polygons, int(ct.Rows), int(ct.Columns))
    with open(out_path, "w") as f:
        json.dump({"rows": int(ct.Rows), "columns": int(ct.Columns), "roi": roi, "contours": len(polygons),
                   "runs": runs(mask)}, f)
    print(f"{roi}: {len(polygons)} contours, {int(mask.sum())} pixels -> {out_path}")


if __name__ == "__main__":
    main()
