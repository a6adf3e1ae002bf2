//! `medico-cli segment` on NIfTI volumes: the mask lands on the prompted slice of the right axis, on the
//! input's exact grid and header; 4D input without `--volume`, truncated files and slices outside the
//! volume are clear errors that write nothing.

use crate::common::*;

use nifti::{IntoNdArray, NiftiObject, ReaderOptions};

#[test]
fn mask_lands_on_the_prompted_slice_with_the_input_geometry() {
    let dir = scratch("mni");
    let bundle = export_small(&dir);
    // cases.json, p3d_mni152_brain: axial = array axis 2, central slice 82, box [27, 28, 169, 207] inclusive.
    let input = shared().join("data/volumes/mni152_t1.nii.gz");
    let out = dir.join("mask.nii.gz");
    let run = medico(&[
        "segment",
        input.to_str().unwrap(),
        "--model",
        bundle.to_str().unwrap(),
        "--slice",
        "82",
        "--plane",
        "axial",
        "--box",
        "27,28,170,208",
        "--json",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        report["slice"],
        serde_json::json!({"axis": 2, "index": 82, "plane": "axial"})
    );
    assert_eq!(report["intensity"], "percentile:1,99");

    let source = ReaderOptions::new().read_file(&input).unwrap();
    let written = ReaderOptions::new().read_file(&out).unwrap();
    let (a, b) = (source.header(), written.header());
    assert_eq!(&a.dim[..4], &b.dim[..4], "same grid");
    assert_eq!((a.sform_code, a.qform_code), (b.sform_code, b.qform_code));
    assert_eq!(
        (a.srow_x, a.srow_y, a.srow_z),
        (b.srow_x, b.srow_y, b.srow_z),
        "same affine"
    );
    assert_eq!(
        (a.quatern_b, a.quatern_c, a.quatern_d),
        (b.quatern_b, b.quatern_c, b.quatern_d)
    );
    assert_eq!(
        (a.quatern_x, a.quatern_y, a.quatern_z),
        (b.quatern_x, b.quatern_y, b.quatern_z)
    );
    assert_eq!(&a.pixdim[..4], &b.pixdim[..4]);

    use nifti::IntoNdArray;
    let mask = written.into_volume().into_ndarray::<f32>().unwrap();
    let mut on_slice = 0usize;
    for ((_, _, k), &v) in mask.into_dimensionality::<ndarray::Ix3>().unwrap().indexed_iter() {
        if v != 0.0 {
            assert_eq!(k, 82, "mask voxel outside the prompted slice");
            on_slice += 1;
        }
    }
    assert_eq!(report["area_px"], on_slice, "reported area equals the written voxels");
    assert!(on_slice > 0);
    assert_eq!(
        report["area_mm2"].as_f64().unwrap(),
        on_slice as f64,
        "1 mm isotropic voxels"
    );
}

#[test]
fn volume_input_errors_write_nothing() {
    let dir = scratch("errors");
    let bundle = export_small(&dir);
    let out = dir.join("mask.nii.gz");
    let four_d = shared().join("data/nifti_odd/example4d.nii.gz");
    let bytes = std::fs::read(shared().join("data/volumes/mni152_t1.nii.gz")).unwrap();
    let truncated = dir.join("truncated.nii.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let mni = shared().join("data/volumes/mni152_t1.nii.gz");
    let b = bundle.to_str().unwrap();
    let o = out.to_str().unwrap();
    for (args, message) in [
        (
            vec![four_d.to_str().unwrap(), "--model", b, "--box", "1,1,9,9", "-o", o],
            "4D volume with 2 volumes: choose one with --volume T",
        ),
        (
            vec![truncated.to_str().unwrap(), "--model", b, "--box", "1,1,9,9", "-o", o],
            "truncated.nii.gz",
        ),
        (
            vec![
                mni.to_str().unwrap(),
                "--model",
                b,
                "--slice",
                "500",
                "--box",
                "1,1,9,9",
                "-o",
                o,
            ],
            "slice 500 is outside the volume (189 slices along axis 2)",
        ),
        (
            vec![
                mni.to_str().unwrap(),
                "--model",
                b,
                "--slice",
                "82",
                "--box",
                "1,1,300,9",
                "-o",
                o,
            ],
            "(slice 82 along axis 2): box (1, 1, 300, 9) extends outside the 197x233 image",
        ),
    ] {
        let mut full = vec!["segment"];
        full.extend(&args);
        let run = medico(&full);
        let stderr = text(&run.stderr);
        assert_eq!(run.status.code(), Some(3), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!out.exists());
    }
    // The 4D file works with --volume.
    let run = medico(&[
        "segment",
        four_d.to_str().unwrap(),
        "--model",
        b,
        "--volume",
        "1",
        "--axis",
        "2",
        "--box",
        "10,10,60,60",
        "-o",
        o,
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(out.exists());
}

/// A NRRD file (raw little-endian float, LPS, as 3D Slicer writes volumes) of a NIfTI volume.
fn as_nrrd(volume: &medico_io::volume::Volume) -> Vec<u8> {
    let [ni, nj, nk] = volume.shape();
    let a = &volume.affine;
    let lps = |r: usize, c: usize| if r < 2 { -a[r][c] + 0.0 } else { a[r][c] };
    let column = |c: usize| format!("({},{},{})", lps(0, c), lps(1, c), lps(2, c));
    let mut bytes = format!(
        "NRRD0004\n# test\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: {ni} {nj} {nk}\n\
         space directions: {} {} {}\nkinds: domain domain domain\nendian: little\nencoding: raw\n\
         space origin: {}\n\n",
        column(0),
        column(1),
        column(2),
        column(3)
    )
    .into_bytes();
    for v in volume.data.t().iter() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

#[test]
fn a_nrrd_volume_segments_as_the_same_volume_in_nifti_does() {
    let dir = scratch("nrrd-input");
    let nifti_input = shared().join("data/volumes/mni152_t1.nii.gz");
    let volume = medico_io::nifti_io::read_nifti(&nifti_input, None).unwrap();
    let nrrd_input = dir.join("mni152_t1.nrrd");
    std::fs::write(&nrrd_input, as_nrrd(&volume)).unwrap();
    let mut masks = Vec::new();
    for (input, name) in [(&nifti_input, "from-nifti.nii.gz"), (&nrrd_input, "from-nrrd.nii.gz")] {
        let out = dir.join(name);
        let run = medico(&[
            "segment",
            input.to_str().unwrap(),
            "--model",
            "medico-tiny",
            "--world",
            "--box",
            "-38,-79,18,42,71,18",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{}", text(&run.stderr));
        let object = ReaderOptions::new().read_file(&out).unwrap();
        let h = object.header().clone();
        masks.push((
            (h.srow_x, h.srow_y, h.srow_z),
            object.into_volume().into_ndarray::<u8>().unwrap(),
        ));
    }
    assert!(masks[0].1.iter().any(|&v| v == 1));
    assert_eq!(masks[0], masks[1], "NRRD input: another mask or another grid");
}
