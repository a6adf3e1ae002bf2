//! Every file in `shared/data/dicom` and `shared/data/nifti_odd` either loads with the right geometry and
//! values or fails with a named reason.
//!
//! Expected geometry is computed by hand from each header (stated per file): DICOM affine columns are
//! row direction × column spacing, column direction × row spacing, the slice step, and Image Position
//! (Patient), with x and y negated (LPS → RAS); NIfTI affines are the sform rows (sform_code > 0).
//! Expected values (minimum, maximum, sum, first pixels) were computed once with pydicom 3 + pylibjpeg
//! and nibabel 5, which share no code with medico.

use std::path::PathBuf;

use medico_io::dicom_io::read_dicom;
use medico_io::input::{open_scan, Scan};
use medico_io::nifti_io::{read_nifti, write_mask_nifti};
use medico_io::volume::{Plane, Volume};
use medico_tests::{scratch_dir, shared_dir};
use ndarray::Array3;

/// An error with its sources, `outer: inner`, as the command line prints it.
trait Chain {
    fn chain(&self) -> String;
}

impl<E: std::error::Error> Chain for E {
    fn chain(&self) -> String {
        medico_io::chain_text(self)
    }
}

fn data(path: &str) -> PathBuf {
    shared_dir().join("data").join(path)
}

fn assert_affine(volume: &Volume, expected: [[f64; 4]; 3], tolerance: f64, what: &str) {
    for (r, row) in expected.iter().enumerate() {
        for (c, &want) in row.iter().enumerate() {
            let got = volume.affine[r][c];
            assert!(
                (got - want).abs() <= tolerance,
                "{what}: affine[{r}][{c}] = {got}, expected {want}\n{:?}",
                volume.affine
            );
        }
    }
    assert_eq!(volume.affine[3], [0.0, 0.0, 0.0, 1.0], "{what}");
}

/// (min, max, sum) of the values, summed in f64.
fn stats(volume: &Volume) -> (f64, f64, f64) {
    volume.data.iter().fold((f64::MAX, f64::MIN, 0.0), |(lo, hi, sum), &v| {
        (lo.min(v as f64), hi.max(v as f64), sum + v as f64)
    })
}

fn assert_stats(volume: &Volume, (min, max, sum): (f64, f64, f64), what: &str) {
    let (lo, hi, total) = stats(volume);
    assert_eq!((lo, hi), (min, max), "{what}: value range");
    assert!(
        (total - sum).abs() <= 1e-6 * sum.abs().max(1.0),
        "{what}: sum {total}, expected {sum}"
    );
}

// --- DICOM -------------------------------------------------------------------------------------------

/// MR_small: IPP (-83.9063, -91.2, 6.6406), IOP identity, Pixel Spacing 0.3125, Slice Thickness 0.8.
const MR_SMALL_AFFINE: [[f64; 4]; 3] = [
    [-0.3125, 0.0, 0.0, 83.9063],
    [0.0, -0.3125, 0.0, 91.2],
    [0.0, 0.0, 0.8, 6.6406],
];
const MR_SMALL_STATS: (f64, f64, f64) = (127.0, 2145.0, 2125338.0);

#[test]
fn ct_small_has_hounsfield_units_and_its_header_geometry() {
    let v = read_dicom(&data("dicom/CT_small.dcm")).unwrap();
    assert_eq!(v.shape(), [128, 128, 1]);
    // IPP (-158.135803, -179.035797, -75.699997), Pixel Spacing 0.661468, Spacing Between Slices 5.
    assert_affine(
        &v,
        [
            [-0.661468, 0.0, 0.0, 158.135803],
            [0.0, -0.661468, 0.0, 179.035797],
            [0.0, 0.0, 5.0, -75.699997],
        ],
        1e-6,
        "CT_small",
    );
    // Rescale slope 1, intercept -1024 applied.
    assert_stats(&v, (-896.0, 1167.0, -1950906.0), "CT_small");
    assert_eq!(
        (v.data[[0, 0, 0]], v.data[[1, 0, 0]], v.data[[2, 0, 0]]),
        (-849.0, -844.0, -858.0)
    );
    assert_eq!(v.orientation(), "LPS");
    assert_eq!(v.axis_for_plane(Plane::Axial), 2);
}

#[test]
fn mr_small_reads_the_same_in_every_supported_transfer_syntax() {
    for name in [
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_jp2klossless.dcm",
    ] {
        let v = read_dicom(&data(&format!("dicom/{name}"))).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.shape(), [64, 64, 1], "{name}");
        assert_affine(&v, MR_SMALL_AFFINE, 1e-6, name);
        assert_stats(&v, MR_SMALL_STATS, name);
        assert_eq!(
            (v.data[[0, 0, 0]], v.data[[1, 0, 0]], v.data[[2, 0, 0]]),
            (905.0, 1019.0, 1227.0),
            "{name}"
        );
    }
}

#[cfg(feature = "jpegls")]
#[test]
fn jpeg_ls_decodes_with_charls() {
    let v = read_dicom(&data("dicom/MR_small_jpeg_ls_lossless.dcm")).unwrap();
    assert_affine(&v, MR_SMALL_AFFINE, 1e-6, "JPEG-LS");
    assert_stats(&v, MR_SMALL_STATS, "JPEG-LS");
}

#[cfg(not(feature = "jpegls"))]
#[test]
fn jpeg_ls_without_charls_names_the_transfer_syntax() {
    let err = read_dicom(&data("dicom/MR_small_jpeg_ls_lossless.dcm"))
        .unwrap_err()
        .chain();
    assert!(err.contains("MR_small_jpeg_ls_lossless.dcm"), "{err}");
    assert!(
        err.contains("unsupported transfer syntax") && err.contains("1.2.840.10008.1.2.4.80"),
        "{err}"
    );
}

#[test]
fn enhanced_mr_without_geometry_stacks_frames_and_says_what_it_assumed() {
    for name in ["emri_small.dcm", "emri_small_RLE.dcm"] {
        let v = read_dicom(&data(&format!("dicom/{name}"))).unwrap();
        assert_eq!(v.shape(), [64, 64, 10], "{name}");
        // No IOP/IPP/Pixel Spacing anywhere; Spacing Between Slices 1.2.
        assert_eq!(v.spacing(), [1.0, 1.0, 1.2], "{name}");
        assert_stats(&v, (0.0, 467.0, 4493276.0), name);
        let notes = v.notes.join("; ");
        assert!(
            notes.contains("no Image Orientation") && notes.contains("no Pixel Spacing"),
            "{notes}"
        );
    }
}

#[test]
fn dicom_seg_uses_its_functional_groups() {
    let v = read_dicom(&data("dicom/liver_1frame.dcm")).unwrap();
    assert_eq!(v.shape(), [512, 512, 1]);
    // Shared groups: Pixel Spacing 0.810547, IOP identity, Slice Thickness 1; per-frame IPP
    // (-235.2, -226.8, -128.69).
    assert_affine(
        &v,
        [
            [-0.810547, 0.0, 0.0, 235.2],
            [0.0, -0.810547, 0.0, 226.8],
            [0.0, 0.0, 1.0, -128.69],
        ],
        1e-6,
        "liver SEG",
    );
    // 1-bit segment unpacked; first set pixel at row 145, column 254.
    assert_stats(&v, (0.0, 1.0, 36233.0), "liver SEG");
    assert_eq!(v.data[[254, 145, 0]], 1.0);
}

#[test]
fn deflated_secondary_capture_inflates() {
    let v = read_dicom(&data("dicom/image_dfl.dcm")).unwrap();
    assert_eq!(v.shape(), [512, 512, 1]);
    assert_stats(&v, (0.0, 255.0, 33322688.0), "image_dfl");
    assert_eq!(v.data[[0, 0, 0]], 213.0);
}

#[test]
fn twelve_bit_lossy_jpeg_is_refused_by_name() {
    // NM, JPEG Extended (Process 2 & 4) with 12-bit samples: jpeg-decoder reads 8-bit lossy JPEG only.
    let err = read_dicom(&data("dicom/JPGExtended.dcm")).unwrap_err().chain();
    assert!(err.contains("JPGExtended.dcm"), "{err}");
    assert!(
        err.contains("unsupported transfer syntax") && err.contains("1.2.840.10008.1.2.4.51") && err.contains("12-bit"),
        "{err}"
    );
}

#[test]
fn lossy_color_jpeg_decodes_close_to_the_reference() {
    // JPEG baseline YBR_FULL_422 ultrasound, 30 frames 320x240: gray = BT.601 luma of the RGB.
    let us = read_dicom(&data("dicom/examples_ybr_color.dcm")).unwrap();
    assert_eq!(us.shape(), [320, 240, 30]);
    let mean = stats(&us).2 / us.data.len() as f64;
    assert!((mean - 10.489).abs() < 0.05, "mean luma {mean}");
    assert!(us.notes.iter().any(|n| n.contains("color image converted to gray")));
}

/// Per-file sums of the 5-file CT series, in slice order along +z (file names in brackets).
const SERIES_SLICE_SUMS: [f64; 5] = [-17594.0, -9701.0, -10964.0, -48364.0, -90697.0];

fn assert_series(v: &Volume, what: &str) {
    assert_eq!(v.shape(), [16, 16, 5], "{what}");
    // z from -1.2375 (file 3353) to 8.7625 (file 2062) in steps of 2.5; IPP x,y (-72.2, -143).
    assert_affine(
        v,
        [
            [-0.488281, 0.0, 0.0, 72.199997],
            [0.0, -0.488281, 0.0, 143.0],
            [0.0, 0.0, 2.5, -1.2375],
        ],
        1e-5,
        what,
    );
    for (k, want) in SERIES_SLICE_SUMS.iter().enumerate() {
        let got: f64 = v.data.index_axis(ndarray::Axis(2), k).iter().map(|&x| x as f64).sum();
        assert_eq!(got, *want, "{what}: slice {k}");
    }
}

#[test]
fn ct_series_loads_in_slice_order_whatever_the_file_order() {
    let dir = data("dicom/series_ct5n");
    assert_series(&read_dicom(&dir).unwrap(), "series as shipped");
    // The same files under names that sort in three other orders.
    let names = ["2062", "2392", "2693", "3023", "3353"];
    for (n, order) in [[4, 0, 3, 1, 2], [0, 1, 2, 3, 4], [2, 4, 1, 0, 3]].iter().enumerate() {
        let copy = scratch_dir(&format!("series-order-{n}"));
        for (rank, &i) in order.iter().enumerate() {
            std::fs::copy(dir.join(names[i]), copy.join(format!("img{rank:02}.dcm"))).unwrap();
        }
        assert_series(&read_dicom(&copy).unwrap(), &format!("order {order:?}"));
    }
}

#[test]
fn series_folders_with_mixed_content_are_refused_with_the_reason() {
    let mixed = scratch_dir("series-mixed");
    std::fs::copy(data("dicom/series_ct5n/2062"), mixed.join("a.dcm")).unwrap();
    std::fs::copy(data("dicom/MR_small.dcm"), mixed.join("b.dcm")).unwrap();
    let err = read_dicom(&mixed).unwrap_err().chain();
    assert!(err.contains("holds 2 series"), "{err}");

    let duplicate = scratch_dir("series-duplicate");
    std::fs::copy(data("dicom/series_ct5n/2062"), duplicate.join("a.dcm")).unwrap();
    std::fs::copy(data("dicom/series_ct5n/2062"), duplicate.join("b.dcm")).unwrap();
    let err = read_dicom(&duplicate).unwrap_err().chain();
    assert!(err.contains("share the position"), "{err}");

    let empty = scratch_dir("series-empty");
    assert!(read_dicom(&empty).unwrap_err().chain().contains("no files"));
}

// --- NIfTI -------------------------------------------------------------------------------------------

#[test]
fn odd_nifti_files_load_with_their_header_geometry() {
    // (file, --volume, shape, affine from the sform rows, (min, max, sum) of the volume read)
    type Case = (&'static str, Option<usize>, [usize; 3], [[f64; 4]; 3], (f64, f64, f64));
    let cases: [Case; 7] = [
        // qform and sform differ by 4 mm; the sform (code 4) wins, as in nibabel.
        (
            "JHU-WhiteMatter-labels-2mm.nii.gz",
            None,
            [91, 109, 91],
            [[2.0, 0.0, 0.0, -90.0], [0.0, 2.0, 0.0, -126.0], [0.0, 0.0, 2.0, -72.0]],
            (0.0, 48.0, 420763.0),
        ),
        // Big-endian int16.
        (
            "anatomical.nii",
            None,
            [33, 41, 25],
            [[-2.0, 0.0, 0.0, 32.0], [0.0, 2.0, 0.0, -40.0], [0.0, 0.0, 2.0, -16.0]],
            (-610.0, 30393.0, 284166082.0),
        ),
        (
            "aniso_vox.nii.gz",
            None,
            [58, 58, 24],
            [
                [-3.9998, 0.0, -0.0516, 118.7634],
                [0.024, -3.2564, -2.9035, 132.1982],
                [-0.0336, -2.3229, 4.0703, 22.8196],
            ],
            (0.0, 2149.0, 7763280.0),
        ),
        (
            "example4d.nii.gz",
            Some(0),
            [128, 96, 24],
            [
                [-2.0, 0.0, 0.0, 117.8551],
                [0.0, 1.9737, -0.3555, -35.7229],
                [0.0, 0.3232, 2.1711, -7.2488],
            ],
            (0.0, 1162.0, 50994397.0),
        ),
        // NIfTI-2 (540-byte header), same oblique geometry as example4d.
        (
            "example_nifti2.nii.gz",
            Some(0),
            [32, 20, 12],
            [
                [-2.0, 0.0, 0.0, 117.8551],
                [0.0, 1.9737, -0.3555, -35.7229],
                [0.0, 0.3232, 2.1711, -7.2488],
            ],
            (49.0, 742.0, 3461748.0),
        ),
        // scl_slope 0.0754, scl_inter 3100.76 applied.
        (
            "functional.nii",
            Some(0),
            [17, 21, 3],
            [[-4.0, 0.0, 0.0, 32.0], [0.0, 4.0, 0.0, -40.0], [0.0, 0.0, 8.0, 0.0]],
            (762.5424365997314, 5538.065757632256, 3883746.552329719),
        ),
        (
            "small_64D.nii",
            Some(0),
            [10, 10, 10],
            [
                [0.0, -2.0, 0.0, 20.0],
                [-1.9397, 0.0, -0.4872, 25.1705],
                [-0.4872, 0.0, 1.9397, 12.3205],
            ],
            (61.0, 1675.0, 378474.0),
        ),
    ];
    for (name, volume, shape, affine, (min, max, sum)) in cases {
        let v = read_nifti(&data(&format!("nifti_odd/{name}")), volume).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.shape(), shape, "{name}");
        assert_affine(&v, affine, 1e-4, name);
        let (lo, hi, total) = stats(&v);
        assert!(
            (lo - min).abs() < 1e-3 && (hi - max).abs() < 1e-3,
            "{name}: range {lo}..{hi}"
        );
        assert!(
            (total - sum).abs() <= 1e-6 * sum.abs(),
            "{name}: sum {total}, expected {sum}"
        );
    }
    let pls = read_nifti(&data("nifti_odd/small_64D.nii"), Some(64)).unwrap();
    assert_eq!(pls.orientation(), "PLS");
    assert_eq!(pls.shape(), [10, 10, 10]);
}

#[test]
fn four_d_files_need_a_volume_and_name_the_count() {
    for (name, count) in [
        ("example4d.nii.gz", 2),
        ("example_nifti2.nii.gz", 2),
        ("small_64D.nii", 65),
    ] {
        let path = data(&format!("nifti_odd/{name}"));
        let err = read_nifti(&path, None).unwrap_err().chain();
        assert!(
            err.contains(&format!("4D volume with {count} volumes")) && err.contains(name),
            "{err}"
        );
        let err = read_nifti(&path, Some(count)).unwrap_err().chain();
        assert!(err.contains(&format!("the file has {count} volumes")), "{err}");
    }
}

#[test]
fn nifti2_mask_keeps_the_input_header() {
    let input = data("nifti_odd/example_nifti2.nii.gz");
    let volume = read_nifti(&input, Some(1)).unwrap();
    let mut mask = Array3::<u8>::zeros(volume.data.dim());
    mask[[3, 4, 5]] = 1;
    mask[[31, 19, 11]] = 1;
    let dir = scratch_dir("nifti2-mask");
    let out = dir.join("mask.nii.gz");
    write_mask_nifti(&out, &volume, &mask).unwrap();
    let back = read_nifti(&out, None).unwrap();
    assert_eq!(back.format, "NIfTI-2");
    assert_eq!(back.affine, volume.affine, "same affine, bit for bit (f64 header)");
    assert_eq!(back.shape(), volume.shape());
    assert_eq!(back.data[[3, 4, 5]], 1.0);
    assert_eq!(back.data[[31, 19, 11]], 1.0);
    assert_eq!(back.data.sum(), 2.0);
}

#[test]
fn dicom_mask_is_written_with_the_dicom_affine() {
    let volume = read_dicom(&data("dicom/series_ct5n")).unwrap();
    let mut mask = Array3::<u8>::zeros(volume.data.dim());
    mask[[2, 3, 4]] = 1;
    let dir = scratch_dir("dicom-mask");
    let out = dir.join("mask.nii.gz");
    write_mask_nifti(&out, &volume, &mask).unwrap();
    let back = read_nifti(&out, None).unwrap();
    assert_series_affine_close(&back, &volume);
    assert_eq!(back.data[[2, 3, 4]], 1.0);
    let header = match &back.grid {
        medico_io::volume::GridHeader::Nifti1(h) => h.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (header.sform_code, header.qform_code),
        (1, 1),
        "scanner-anatomical codes"
    );
}

fn assert_series_affine_close(a: &Volume, b: &Volume) {
    for r in 0..4 {
        for c in 0..4 {
            assert!(
                (a.affine[r][c] - b.affine[r][c]).abs() < 1e-5,
                "{:?} vs {:?}",
                a.affine,
                b.affine
            );
        }
    }
}

#[test]
fn open_scan_dispatches_on_what_the_file_is() {
    assert!(matches!(
        open_scan(&data("dicom/series_ct5n/2062"), None),
        Ok(Scan::Volume(_))
    ));
    assert!(matches!(
        open_scan(&data("slices2d/ct_small_raw_u16.png"), None),
        Ok(Scan::Image(_))
    ));
    assert!(matches!(
        open_scan(&data("volumes/mni152_t1.nii.gz"), None),
        Ok(Scan::Volume(_))
    ));
    let err = open_scan(&data("dicom/MR_small.dcm"), Some(1)).unwrap_err().chain();
    assert!(err.contains("--volume applies to 4D NIfTI"), "{err}");
    let err = open_scan(&data("no/such/file.nii"), None).unwrap_err().chain();
    assert!(err.contains("no such file"), "{err}");
}

/// INIA19's label volume stores its data after 32,624 bytes of padding (`vox_offset` 32976, no extensions).
/// The `nifti` crate alone reads the padding as voxels; medico must not: the left caudate (label 82) on axial
/// slice 70 is where `cases.json` (computed with nibabel) says, 265 pixels in x 63..=80, y 80..=136.
#[test]
fn nifti_data_after_padding_is_read_from_vox_offset() {
    let labels = read_nifti(&shared_dir().join("data/volumes/inia19_neuromaps_labels.nii.gz"), None).unwrap();
    let (values, (h, w)) = labels.slice(2, 70);
    let pixels: Vec<(usize, usize)> = values
        .iter()
        .enumerate()
        .filter(|(_, &v)| v == 82.0)
        .map(|(i, _)| (i % w, i / w))
        .collect();
    assert_eq!((h, w), (206, 168));
    assert_eq!(pixels.len(), 265);
    let (xs, ys): (Vec<usize>, Vec<usize>) = pixels.into_iter().unzip();
    assert_eq!((*xs.iter().min().unwrap(), *xs.iter().max().unwrap()), (63, 80));
    assert_eq!((*ys.iter().min().unwrap(), *ys.iter().max().unwrap()), (80, 136));

    // Any volume, with padding inserted before its data, reads the same as without.
    let original_path = shared_dir().join("data/volumes/mni152_brain_mask.nii.gz");
    let original = read_nifti(&original_path, None).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&original_path).unwrap()),
        &mut bytes,
    )
    .unwrap();
    let padding = 1000;
    let mut padded = bytes[..352].to_vec();
    padded[108..112].copy_from_slice(&((352 + padding) as f32).to_le_bytes());
    padded.extend(std::iter::repeat_n(0xA5u8, padding));
    padded.extend_from_slice(&bytes[352..]);
    let dir = scratch_dir("nifti-padding");
    let padded_path = dir.join("padded.nii");
    std::fs::write(&padded_path, padded).unwrap();
    let read = read_nifti(&padded_path, None).unwrap();
    assert_eq!(read.data, original.data);
    assert_eq!(read.affine, original.affine);
}

/// Mutated RLE files that made dicom-rs's decoder panic (`io/tests/data/dicom_corrupt`): each is refused
/// with an error naming the file, the fragment and the defect.
#[test]
fn corrupt_rle_is_refused_cleanly() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../io/tests/data/dicom_corrupt");
    for (file, expected) in [
        (
            "rle_short_segment_a.dcm",
            "segment 0 decodes to 3858 bytes, a frame needs 4096",
        ),
        (
            "rle_short_segment_b.dcm",
            "segment 0 decodes to 3637 bytes, a frame needs 4096",
        ),
        (
            "rle_segment_count.dcm",
            "header names 3909091330 segments, the image needs 2",
        ),
    ] {
        let path = dir.join(file);
        let outcome = std::panic::catch_unwind(|| read_dicom(&path));
        let error = outcome
            .unwrap_or_else(|_| panic!("{file}: the reader panicked"))
            .expect_err(file)
            .chain();
        assert!(error.contains(file) && error.contains(expected), "{file}: {error}");
    }
    // The file they were made from still reads.
    assert!(read_dicom(&data("dicom/emri_small_RLE.dcm")).is_ok());
}
