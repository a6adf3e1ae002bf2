"""Checks a DICOM SEG written by medico with highdicom (PyPI highdicom 0.28.2 / pydicom 3.0.2), as a PACS
viewer would read it: the object parses as a highdicom Segmentation, its segment is described, every frame
references a source instance of the given series, and the frames decode to binary masks.

    python scripts/check_dicom_seg.py SEG.dcm SOURCE_DICOM_FILE_OR_FOLDER

Not run in CI (it needs highdicom); scripts/check_dicom_seg.sh sets up a venv and runs it with dciodvfy.
"""

import os
import sys

import highdicom as hd
import numpy as np
import pydicom


def main():
    seg_path, source = sys.argv[1:3]
    seg = hd.seg.segread(seg_path)
    files = [os.path.join(source, f) for f in sorted(os.listdir(source))] if os.path.isdir(source) else [source]
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    # An instance's UID: the dataset's, else (an anonymiser emptied it) the file meta's, as medico takes it.
    instance_uid = lambda d: d.get("SOPInstanceUID") or d.file_meta.MediaStorageSOPInstanceUID
    instances = {instance_uid(d) for d in datasets}
    positions = {instance_uid(d): [float(v) for v in d.ImagePositionPatient] for d in datasets if "ImagePositionPatient" in d}
    print(f"highdicom {hd.__version__}: {type(seg).__name__}, SegmentationType {seg.segmentation_type.value}")
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        print(f"segment {number}: label {description.segment_label!r}, algorithm type "
              f"{description.algorithm_type.value}, algorithm {description.algorithm_identification[0].AlgorithmName!r}")
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    missing = referenced - instances
    print(f"source instances referenced: {len(referenced)} of the series' {len(instances)}; unknown: {len(missing)}")
    if missing:
        raise SystemExit(f"the SEG references instances not in {source}: {sorted(missing)}")
    for n, frame in enumerate(seg.PerFrameFunctionalGroupsSequence, 1):
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        at = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        if uid in positions and max(abs(a - b) for a, b in zip(at, positions[uid])) > 1e-3:
            raise SystemExit(f"frame {n} lies at {at}, its source image at {positions[uid]}")
    print("every frame lies where its source image lies")
    pixels = seg.pixel_array
    pixels = pixels.reshape((-1,) + pixels.shape[-2:])  # one frame: 2D
    values = np.unique(pixels)
    print(f"frames: {pixels.shape[0]} of {pixels.shape[1]}x{pixels.shape[2]}, values {values.tolist()}, "
          f"{int(pixels.sum())} voxels set")
    if not set(values.tolist()) <= {0, 1}:
        raise SystemExit("a BINARY SEG must hold 0 and 1 only")
    print("highdicom: OK")


if __name__ == "__main__":
    main()
