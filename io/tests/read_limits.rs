//! Reading within [`ReadLimits`]: a file whose header declares more voxels (or more voxel data) than the
//! caller allows is refused with `IoError::TooLarge` naming the file, before its data is read, inflated or
//! decoded, for every volume format; a file within the limit reads as it does without one. Files are tiny:
//! the limits are a few thousand voxels.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use medico_io::input::{open_scan, open_scan_within, ReadLimits, Scan};
use medico_io::volume::Volume;
use medico_io::IoError;

fn shared() -> PathBuf {
    std::env::var_os("MEDICO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// A little-endian single-file NIfTI-1 header for `dims` of data type `datatype` (`bits` per voxel), data
/// at byte 352.
fn nifti1_header(dims: &[i16], datatype: i16, bits: i16) -> Vec<u8> {
    let mut bytes = vec![0u8; 352];
    bytes[..4].copy_from_slice(&348i32.to_le_bytes());
    bytes[40..42].copy_from_slice(&(dims.len() as i16).to_le_bytes());
    for (i, d) in dims.iter().enumerate() {
        bytes[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    bytes[70..72].copy_from_slice(&datatype.to_le_bytes());
    bytes[72..74].copy_from_slice(&bits.to_le_bytes());
    for i in 0..4 {
        bytes[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    bytes[108..112].copy_from_slice(&352f32.to_le_bytes());
    bytes[344..348].copy_from_slice(b"n+1\0");
    bytes
}

/// `parts` gzip-compressed, each as its own gzip member.
fn gzip_members(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(part).unwrap();
        out.extend(encoder.finish().unwrap());
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn volume(scan: Scan) -> Volume {
    match scan {
        Scan::Volume(v) => *v,
        Scan::Image(_) => panic!("not a volume"),
    }
}

/// Reads `path` within `max_voxels`, expecting the refusal: returns its message after checking that it is
/// `TooLarge`, names the file and the limit.
fn refused(path: &Path, volume: Option<usize>, max_voxels: usize) -> String {
    let error = open_scan_within(path, volume, &ReadLimits::max_voxels(max_voxels)).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, IoError::TooLarge { max_voxels: m, .. } if m == max_voxels as u64),
        "{}: not TooLarge: {message}",
        path.display()
    );
    assert!(message.starts_with(&path.display().to_string()), "{message}");
    assert!(message.contains(&format!("at most {max_voxels} voxels")), "{message}");
    message
}

/// Reads `path` with and without `max_voxels`: the same volume.
fn reads_the_same(path: &Path, volume: Option<usize>, max_voxels: usize) -> Volume {
    let unlimited = self::volume(open_scan(path, volume).unwrap());
    let limited = self::volume(open_scan_within(path, volume, &ReadLimits::max_voxels(max_voxels)).unwrap());
    assert_eq!(limited.data, unlimited.data, "{}", path.display());
    assert_eq!(limited.affine, unlimited.affine);
    assert_eq!(limited.format, unlimited.format);
    limited
}

/// An int16 10x10x10 NIfTI-1 (values `i - 500`) and its values.
fn int16_nifti() -> (Vec<u8>, Vec<f32>) {
    let mut bytes = nifti1_header(&[10, 10, 10], 4, 16);
    let values: Vec<i16> = (0..1000).map(|i| i - 500).collect();
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    (bytes, values.iter().map(|&v| f32::from(v)).collect())
}

#[test]
fn nifti1_files_over_the_limit_are_refused_before_their_data() {
    let dir = tempfile::tempdir().unwrap();
    // Headers declaring 1000^3 uint8 voxels, no data: plain, gzip, and header and data in two gzip members.
    let header = nifti1_header(&[1000, 1000, 1000], 2, 8);
    let plain = write(dir.path(), "big.nii", &header);
    let message = refused(&plain, None, 1000);
    assert!(
        message.contains("declares 1000000000 voxels (uint8, 1000x1000x1000, 953.7 MiB)"),
        "{message}"
    );
    refused(&write(dir.path(), "big.nii.gz", &gzip_members(&[&header])), None, 1000);
    let zeros = vec![0u8; 1 << 20];
    let multi = gzip_members(&[&header, &zeros, &zeros]);
    refused(&write(dir.path(), "big_multi.nii.gz", &multi), None, 1000);
    // Without a limit the same file is only refused (as truncated) once its 2 MB of data are inflated.
    let error = open_scan(&dir.path().join("big_multi.nii.gz"), None).unwrap_err();
    let message = medico_io::chain_text(&error);
    assert!(
        message.contains("truncated: the header needs 1000000352 bytes"),
        "{message}"
    );

    // The data's bytes count too: 600 float64 voxels are 4800 bytes, more than 1000 float32 voxels.
    let mut float64 = nifti1_header(&[10, 10, 6], 64, 64);
    float64.extend(vec![0u8; 4800]);
    let message = refused(&write(dir.path(), "f64.nii", &float64), None, 1000);
    assert!(
        message.contains("declares 600 voxels (float64, 10x10x6, 4.7 KiB)"),
        "{message}"
    );
    assert!(
        message.contains("(3.9 KiB as float32) and 3.9 KiB of voxel data"),
        "{message}"
    );
}

#[test]
fn nifti1_files_within_the_limit_read_as_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, values) = int16_nifti();
    let header = &bytes[..352];
    let data = &bytes[352..];
    for (name, file) in [
        ("plain.nii", bytes.clone()),
        ("single.nii.gz", gzip_members(&[&bytes])),
        ("multi.nii.gz", gzip_members(&[header, &data[..999], &data[999..]])),
    ] {
        let path = write(dir.path(), name, &file);
        let volume = reads_the_same(&path, None, 1000);
        // [i, j, k] from Fortran-ordered data.
        assert_eq!(volume.data[[3, 4, 5]], values[3 + 10 * 4 + 100 * 5], "{name}");
        assert_eq!(volume.data.shape(), &[10, 10, 10]);
        refused(&path, None, 999);
    }
}

#[test]
fn a_4d_nifti_counts_every_volume() {
    // example4d.nii.gz: 128x96x24 voxels, 2 volumes.
    let path = shared().join("data/nifti_odd/example4d.nii.gz");
    let one = 128 * 96 * 24;
    let message = refused(&path, Some(0), 2 * one - 1);
    assert!(message.contains("128x96x24x2"), "{message}");
    let volume = reads_the_same(&path, Some(1), 2 * one);
    assert_eq!(volume.shape(), [128, 96, 24]);
}

#[test]
fn nifti2_files_over_the_limit_are_refused_and_within_it_read_the_same() {
    // example_nifti2.nii.gz: int16, 32x20x12x2 = 15360 voxels.
    let path = shared().join("data/nifti_odd/example_nifti2.nii.gz");
    let message = refused(&path, Some(0), 15359);
    assert!(message.contains("int16, 32x20x12x2"), "{message}");
    reads_the_same(&path, Some(1), 15360);

    // Its header declaring 2^31 voxels, with no data, plain and gzip.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()),
        &mut bytes,
    )
    .unwrap();
    let mut header = bytes[..608].to_vec();
    for (axis, size) in [(1, 2048i64), (2, 1024), (3, 1024), (4, 1)] {
        header[16 + 8 * axis..24 + 8 * axis].copy_from_slice(&size.to_le_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let message = refused(&write(dir.path(), "big2.nii", &header), None, 1000);
    assert!(
        message.contains("declares 2147483648 voxels (int16, 2048x1024x1024x1"),
        "{message}"
    );
    refused(&write(dir.path(), "big2.nii.gz", &gzip_members(&[&header])), None, 1000);
}

/// A NRRD file: header fields after the magic, then the body.
fn nrrd(fields: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!("NRRD0004\n{fields}\n").into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn nrrd_files_over_the_limit_are_refused_before_their_body() {
    let dir = tempfile::tempdir().unwrap();
    let fields = "type: uchar\ndimension: 3\nsizes: 1024 1024 1024\nencoding: gzip\n";
    // 2 MB of zeros in two gzip members: a few kB on disk, 1 GiB declared.
    let zeros = vec![0u8; 1 << 20];
    let bomb = nrrd(fields, &gzip_members(&[&zeros, &zeros]));
    assert!(bomb.len() < 10_000);
    let message = refused(&write(dir.path(), "bomb.nrrd", &bomb), None, 1000);
    assert!(
        message.contains("declares 1073741824 voxels (uint8, 1024x1024x1024, 1 GiB)"),
        "{message}"
    );
    let raw = nrrd(&fields.replace("gzip", "raw"), &[]);
    refused(&write(dir.path(), "raw.nrrd", &raw), None, 1000);
    // Doubles: 600 voxels, 4800 bytes of data.
    let doubles = nrrd(
        "type: double\ndimension: 3\nsizes: 10 10 6\nencoding: raw\n",
        &[0u8; 4800],
    );
    let message = refused(&write(dir.path(), "doubles.nrrd", &doubles), None, 1000);
    assert!(message.contains("(double, 10x10x6, 4.7 KiB)"), "{message}");
}

#[test]
fn nrrd_files_within_the_limit_read_as_without_one_and_every_gzip_member_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<i16> = (0..1000).map(|i| 3 * i - 1500).collect();
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let fields = "type: short\ndimension: 3\nsizes: 10 10 10\nendian: little\nspace: RAS\n";
    for (name, encoding, body) in [
        ("raw.nrrd", "raw", data.clone()),
        ("gzip.nrrd", "gzip", gzip_members(&[&data])),
        (
            "members.nrrd",
            "gzip",
            gzip_members(&[&data[..1], &data[1..1001], &data[1001..]]),
        ),
    ] {
        let path = write(
            dir.path(),
            name,
            &nrrd(&format!("{fields}encoding: {encoding}\n"), &body),
        );
        let volume = reads_the_same(&path, None, 1000);
        let expected =
            ndarray::Array3::from_shape_fn((10, 10, 10), |(i, j, k)| f32::from(values[i + 10 * j + 100 * k]));
        assert_eq!(volume.data, expected, "{name}");
        refused(&path, None, 999);
    }
}

#[test]
fn dicom_files_and_series_over_the_limit_are_refused_before_decoding() {
    // CT_small.dcm: one 128x128 16-bit frame.
    let file = shared().join("data/dicom/CT_small.dcm");
    let message = refused(&file, None, 128 * 128 - 1);
    assert!(
        message.contains("declares 16384 voxels (16-bit, 128x128x1, 32 KiB)"),
        "{message}"
    );
    reads_the_same(&file, None, 128 * 128);
    // The bytes of its pixel data count too: 16-bit samples, 2 bytes for 4 allowed per voxel.
    let bytes = std::fs::read(&file).unwrap();
    let limited = medico_io::dicom_io::dicom_from_bytes_within(&file, &bytes, &ReadLimits::max_voxels(16384)).unwrap();
    assert_eq!(
        limited.data,
        medico_io::dicom_io::dicom_from_bytes(&file, &bytes).unwrap().data
    );

    // series_ct5n: five 16x16 files; refused by the first file's size times five, naming the folder.
    let series = shared().join("data/dicom/series_ct5n");
    let message = refused(&series, None, 5 * 16 * 16 - 1);
    assert!(
        message.contains("declares 1280 voxels (5 files of 16-bit, 16x16x1"),
        "{message}"
    );
    reads_the_same(&series, None, 5 * 16 * 16);
}

#[test]
fn images_are_refused_by_their_header_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gray.png");
    image::GrayImage::from_pixel(40, 30, image::Luma([7u8]))
        .save(&path)
        .unwrap();
    let message = refused(&path, None, 40 * 30 - 1);
    assert!(message.contains("declares 1200 voxels (L8, 40x30"), "{message}");
    assert!(matches!(
        open_scan_within(&path, None, &ReadLimits::max_voxels(1200)),
        Ok(Scan::Image(_))
    ));
}

#[test]
fn unlimited_is_the_default_and_what_open_scan_uses() {
    assert_eq!(ReadLimits::default(), ReadLimits::UNLIMITED);
    assert_eq!(ReadLimits::max_voxels(1000).max_data_bytes(), 4000);
    assert_eq!(ReadLimits::UNLIMITED.max_data_bytes(), u64::MAX);
}

#[test]
fn a_deflated_dicom_dataset_is_not_inflated_past_the_limit() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    // CT_small.dcm with 80 MiB of zero pixel data, deflated: a small file whose attributes lie inside a
    // dataset that inflates to more than the 4 kB of voxel data and the 64 MiB of metadata allowed.
    let source = dicom_object::open_file(shared().join("data/dicom/CT_small.dcm")).unwrap();
    let mut obj = source.into_inner();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(vec![0u8; 80 << 20]),
    ));
    let file = obj
        .with_meta(dicom_object::FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.1.99"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deflated.dcm");
    file.write_to_file(&path).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    let message = refused(&path, None, 1000);
    assert!(
        message.contains("declares a deflated DICOM dataset of more than 64 MiB"),
        "{message}"
    );
    // The shared deflated file is within a limit of its size.
    reads_the_same(&shared().join("data/dicom/image_dfl.dcm"), None, 1 << 20);
}
