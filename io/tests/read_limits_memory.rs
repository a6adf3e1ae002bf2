//! Files over the caller's [`ReadLimits`] are refused without reading or inflating their data: a counting
//! allocator measures the peak of live bytes while each is refused (this binary holds no other test, so the
//! peak is this test's).

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use medico_io::input::{open_scan_within, ReadLimits};
use medico_io::IoError;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::measure_peak;

/// Bytes a refused file may make the reader hold at its peak (its header, buffers).
const PEAK_LIMIT: usize = 1 << 20;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A NIfTI-1 header declaring `dims` of uint8.
fn nifti1_header(dims: [i16; 3]) -> Vec<u8> {
    let mut bytes = vec![0u8; 352];
    bytes[..4].copy_from_slice(&348i32.to_le_bytes());
    bytes[40..42].copy_from_slice(&3i16.to_le_bytes());
    for (i, d) in dims.iter().enumerate() {
        bytes[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    bytes[70..72].copy_from_slice(&2i16.to_le_bytes());
    bytes[72..74].copy_from_slice(&8i16.to_le_bytes());
    bytes[108..112].copy_from_slice(&352f32.to_le_bytes());
    bytes[344..348].copy_from_slice(b"n+1\0");
    bytes
}

fn refused_within_bounded_memory(path: &Path) {
    let (outcome, peak) = measure_peak(|| open_scan_within(path, None, &ReadLimits::max_voxels(1 << 20)));
    assert!(
        matches!(outcome, Err(IoError::TooLarge { .. })),
        "{}: {outcome:?}",
        path.display()
    );
    assert!(peak < PEAK_LIMIT, "{}: held {peak} bytes at its peak", path.display());
}

#[test]
fn files_over_the_limit_are_refused_without_reading_their_data() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB of data declared (4096 x 4096 x 4 uint8 voxels), present in full: a sparse plain file, and
    // zeros that inflate to it from a few hundred kB of gzip.
    let header = nifti1_header([4096, 4096, 4]);
    let data = vec![0u8; 64 << 20];
    let plain = dir.path().join("sparse.nii");
    let file = std::fs::File::create(&plain).unwrap();
    (&file).write_all(&header).unwrap();
    file.set_len(352 + (64 << 20)).unwrap();
    let mut nii_gz = gzip(&header);
    nii_gz.extend(gzip(&data));
    let nrrd_head = |encoding: &str| {
        format!("NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4096 4096 4\nencoding: {encoding}\n\n").into_bytes()
    };
    let mut nrrd = nrrd_head("gzip");
    nrrd.extend(gzip(&data[..32 << 20]));
    nrrd.extend(gzip(&data[32 << 20..]));
    let mut raw_nrrd = nrrd_head("raw");
    raw_nrrd.extend_from_slice(&data);
    drop(data);
    let files = [("multi.nii.gz", nii_gz), ("multi.nrrd", nrrd), ("raw.nrrd", raw_nrrd)];
    let mut paths = vec![plain];
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        paths.push(path);
    }
    for path in &paths {
        refused_within_bounded_memory(path);
    }
}
