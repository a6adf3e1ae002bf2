//! `medico-cli segment` and `info` on DICOM and with world coordinates: masks on the DICOM grid, the
//! intensity recorded, previews written, `--world` equal to the voxel prompt it maps to, and bad DICOM
//! input refused with the reason, exit code 3 and no output.

use crate::common::*;

use std::path::Path;

use nifti::{IntoNdArray, NiftiObject, ReaderOptions};

fn segment_json(args: &[&str]) -> serde_json::Value {
    let mut full = vec!["segment"];
    full.extend(args);
    full.push("--json");
    let run = medico(&full);
    assert!(run.status.success(), "{args:?}: {}", text(&run.stderr));
    serde_json::from_slice(&run.stdout).unwrap()
}

fn mask_voxels(path: &Path) -> (Vec<(usize, usize, usize)>, nifti::NiftiHeader) {
    let object = ReaderOptions::new().read_file(path).unwrap();
    let header = object.header().clone();
    let array = object.into_volume().into_ndarray::<f32>().unwrap();
    let voxels = array
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap()
        .indexed_iter()
        .filter(|(_, &v)| v != 0.0)
        .map(|(ijk, _)| ijk)
        .collect();
    (voxels, header)
}

#[test]
fn dicom_ct_mask_lies_on_the_dicom_grid_with_a_preview() {
    let dir = scratch("dicom-ct");
    let bundle = export_small(&dir);
    let input = shared().join("data/dicom/CT_small.dcm");
    let out = dir.join("mask.nii.gz");
    let preview = dir.join("preview.png");
    let report = segment_json(&[
        input.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--box",
        "30,30,100,100",
        "--intensity",
        "ct-abdomen",
        "--preview",
        preview.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(report["intensity"], "ct-abdomen");
    assert_eq!(report["slice"]["axis"], 2, "the only slice of a single-frame file");
    let (voxels, header) = mask_voxels(&out);
    assert_eq!(&header.dim[..4], &[3, 128, 128, 1]);
    // Affine from the DICOM header (IPP, Pixel Spacing 0.661468, spacing 5 mm), LPS -> RAS.
    assert_eq!((header.sform_code, header.qform_code), (1, 1));
    let close = |a: [f32; 4], b: [f64; 4]| a.iter().zip(b).all(|(x, y)| (*x as f64 - y).abs() < 1e-4);
    assert!(
        close(header.srow_x, [-0.661468, 0.0, 0.0, 158.135803]),
        "{:?}",
        header.srow_x
    );
    assert!(
        close(header.srow_y, [0.0, -0.661468, 0.0, 179.035797]),
        "{:?}",
        header.srow_y
    );
    assert!(close(header.srow_z, [0.0, 0.0, 5.0, -75.699997]), "{:?}", header.srow_z);
    let area = voxels.len();
    assert_eq!(report["area_px"], area);
    assert!(area > 0);
    let ml = report["volume_ml"].as_f64().unwrap();
    let expected = area as f64 * 0.661468 * 0.661468 * 5.0 / 1000.0;
    assert!((ml - expected).abs() < 1e-6 * expected.max(1.0), "{ml} vs {expected}");
    let preview = image::open(&preview).unwrap().to_rgb8();
    assert_eq!(preview.dimensions(), (128, 128));
}

#[test]
fn dicom_series_segments_its_central_slice() {
    let dir = scratch("dicom-series");
    let bundle = export_small(&dir);
    let input = shared().join("data/dicom/series_ct5n");
    let out = dir.join("mask.nii");
    let report = segment_json(&[
        input.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--box",
        "2,2,14,14",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(report["slice"]["index"], 2);
    assert_eq!(report["slice"]["plane"], "axial");
    let (voxels, header) = mask_voxels(&out);
    assert_eq!(&header.dim[..4], &[3, 16, 16, 5]);
    assert!(voxels.iter().all(|&(_, _, k)| k == 2), "mask only on slice 2");
}

#[test]
fn world_prompts_equal_the_voxel_prompts_they_map_to() {
    let dir = scratch("world");
    let bundle = export_small(&dir);
    let input = shared().join("data/volumes/mni152_t1.nii.gz");
    let (by_voxel, by_world) = (dir.join("voxel.nii.gz"), dir.join("world.nii.gz"));
    // mni152_t1 sform: x = i - 98, y = j - 134, z = k - 72 (1 mm, RAS). Case p3d box [27, 28, 169, 207]
    // (exclusive 170, 208) on axial slice 82, point (98, 113).
    let b = bundle.to_str().unwrap();
    let voxel = segment_json(&[
        input.to_str().unwrap(),
        "--model",
        b,
        "--slice",
        "82",
        "--box",
        "27,28,170,208",
        "--point",
        "98,113",
        "-o",
        by_voxel.to_str().unwrap(),
    ]);
    let world = segment_json(&[
        input.to_str().unwrap(),
        "--model",
        b,
        "--world",
        "--box",
        "-71,-106,10,72,74,10",
        "--point",
        "0,-21,10",
        "-o",
        by_world.to_str().unwrap(),
    ]);
    assert_eq!(world["slice"]["index"], 82, "slice from z = 10 mm");
    assert_eq!(voxel["area_px"], world["area_px"]);
    assert_eq!(mask_voxels(&by_voxel).0, mask_voxels(&by_world).0);

    // Prompts on two different slices are refused.
    let run = medico(&[
        "segment",
        input.to_str().unwrap(),
        "--model",
        b,
        "--world",
        "--point",
        "0,-21,10",
        "--point",
        "0,-21,30",
        "-o",
        dir.join("x.nii.gz").to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(3));
    assert!(
        text(&run.stderr).contains("lie on different slices"),
        "{}",
        text(&run.stderr)
    );
}

#[test]
fn info_describes_volumes_and_images() {
    let run = medico(&[
        "info",
        shared().join("data/dicom/series_ct5n").to_str().unwrap(),
        "--json",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let r: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(r["shape"], serde_json::json!([16, 16, 5]));
    assert_eq!(r["orientation"], "LPS");
    assert_eq!(r["value_range"], serde_json::json!([-888.0, 85.0]));
    assert!(r["format"].as_str().unwrap().contains("DICOM series of 5 files"));
    let spacing = r["spacing_mm"].as_array().unwrap();
    assert!((spacing[2].as_f64().unwrap() - 2.5).abs() < 1e-6);

    let run = medico(&[
        "info",
        shared().join("data/nifti_odd/example_nifti2.nii.gz").to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = text(&run.stdout);
    for needle in [
        "NIfTI-2",
        "32 x 20 x 12",
        "LAS",
        "volume 0 of the 2 volumes",
        "axial:",
        "axis 2, 12 slices",
    ] {
        assert!(out.contains(needle), "missing '{needle}' in:\n{out}");
    }

    let run = medico(&[
        "info",
        shared().join("data/slices2d/ct_small_raw_u16.png").to_str().unwrap(),
        "--json",
    ]);
    let r: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!((r["width"].as_u64(), r["height"].as_u64()), (Some(128), Some(128)));
}

/// MR_small.dcm with the Pixel Data length (explicit VR little endian header `E0 7F 10 00 'O' 'W'`)
/// replaced by `claimed`.
fn with_pixel_data_length(claimed: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(shared().join("data/dicom/MR_small.dcm")).unwrap();
    let at = bytes
        .windows(6)
        .position(|w| w == [0xE0, 0x7F, 0x10, 0x00, b'O', b'W'])
        .expect("pixel data header");
    bytes[at + 8..at + 12].copy_from_slice(&claimed.to_le_bytes());
    bytes
}

#[test]
fn bad_dicom_input_is_refused_with_the_reason_and_writes_nothing() {
    let dir = scratch("dicom-bad");
    let bundle = export_small(&dir);
    let source = std::fs::read(shared().join("data/dicom/MR_small.dcm")).unwrap();
    let truncated = dir.join("truncated.dcm");
    std::fs::write(&truncated, &source[..source.len() - 3000]).unwrap();
    let huge = dir.join("huge.dcm");
    std::fs::write(&huge, with_pixel_data_length(0xF000_0000)).unwrap();
    // JPEG-LS file relabelled as JPIP Referenced (1.2.840.10008.1.2.4.94, same length): no pixel decoder.
    let mut jpip = std::fs::read(shared().join("data/dicom/MR_small_jpeg_ls_lossless.dcm")).unwrap();
    let at = jpip.windows(22).position(|w| w == b"1.2.840.10008.1.2.4.80").unwrap();
    jpip[at..at + 22].copy_from_slice(b"1.2.840.10008.1.2.4.94");
    let unsupported = dir.join("jpip.dcm");
    std::fs::write(&unsupported, &jpip).unwrap();
    let not_dicom = dir.join("notes.dcm");
    std::fs::write(&not_dicom, b"this is not DICOM").unwrap();

    let out = dir.join("mask.nii.gz");
    let b = bundle.to_str().unwrap();
    let o = out.to_str().unwrap();
    for (input, message) in [
        (&truncated, "truncated.dcm: "),
        (&huge, "element (7FE0,0010) claims 4026531840 bytes"),
        (&unsupported, "unsupported transfer syntax"),
        (&not_dicom, "notes.dcm: "),
    ] {
        let run = medico(&[
            "segment",
            input.to_str().unwrap(),
            "--model",
            b,
            "--box",
            "1,1,9,9",
            "-o",
            o,
        ]);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(3), "{input:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(message), "{input:?}: {stderr}");
        assert!(
            stderr.contains(input.file_name().unwrap().to_str().unwrap()),
            "{stderr}"
        );
        assert!(!out.exists());
    }
    let stderr = text(
        &medico(&[
            "segment",
            unsupported.to_str().unwrap(),
            "--model",
            b,
            "--box",
            "1,1,9,9",
            "-o",
            o,
        ])
        .stderr,
    );
    assert!(stderr.contains("1.2.840.10008.1.2.4.94"), "{stderr}");

    // The preview may not overwrite the input either.
    let input = shared().join("data/dicom/CT_small.dcm");
    let copy = dir.join("ct.dcm");
    std::fs::copy(&input, &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let run = medico(&[
        "segment",
        copy.to_str().unwrap(),
        "--model",
        b,
        "--box",
        "1,1,9,9",
        "--preview",
        copy.to_str().unwrap(),
        "-o",
        o,
    ]);
    assert_eq!(run.status.code(), Some(3));
    assert!(text(&run.stderr).contains("would overwrite the input"));
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    assert!(!out.exists());

    // Volume-only options on a 2D image are usage errors.
    let png = shared().join("data/slices2d/mni152_axial_a2_082.png");
    let run = medico(&[
        "segment",
        png.to_str().unwrap(),
        "--model",
        b,
        "--world",
        "--point",
        "1,2,3",
        "-o",
        o,
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    let run = medico(&[
        "segment",
        png.to_str().unwrap(),
        "--model",
        b,
        "--intensity",
        "ct-heart",
        "--box",
        "1,1,9,9",
        "-o",
        o,
    ]);
    assert_eq!(run.status.code(), Some(2));
    assert!(text(&run.stderr).contains("unknown intensity 'ct-heart'"));
    assert!(!out.exists());
}

#[test]
fn a_dicom_series_mask_is_written_as_a_dicom_seg_that_reads_back_onto_the_grid() {
    let dir = scratch("dicom-seg");
    let bundle = export_small(&dir);
    let input = shared().join("data/dicom/series_ct5n");
    let (seg, nii) = (dir.join("mask.dcm"), dir.join("mask.nii"));
    for out in [&seg, &nii] {
        let run = medico(&[
            "segment",
            input.to_str().unwrap(),
            "--model",
            bundle.to_str().unwrap(),
            "--box",
            "2,2,14,14",
            "--label",
            "tumour",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{}", text(&run.stderr));
    }
    let volume = medico_io::dicom_io::read_dicom(&input).unwrap();
    let from_seg = medico_io::dicom_seg::read_dicom_seg(&seg, &volume).unwrap();
    let from_nifti = ReaderOptions::new()
        .read_file(&nii)
        .unwrap()
        .into_volume()
        .into_ndarray::<u8>()
        .unwrap();
    assert!(from_seg.iter().any(|&v| v == 1), "empty segmentation");
    assert_eq!(from_seg.into_dyn(), from_nifti, "the SEG and the NIfTI mask differ");
    assert_eq!(crate::common::seg_label(&seg), "tumour");
}

#[test]
fn a_dicom_seg_needs_a_dicom_input() {
    let dir = scratch("dicom-seg-nifti");
    let out = dir.join("mask.dcm");
    let input = shared().join("data/volumes/mni152_t1.nii.gz");
    let run = medico(&[
        "segment",
        input.to_str().unwrap(),
        "--model",
        "medico-tiny",
        "--box",
        "60,50,140,200",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    let err = text(&run.stderr);
    assert!(err.contains("mask.dcm") && err.contains("must be DICOM"), "{err}");
    assert!(!out.exists());
}
