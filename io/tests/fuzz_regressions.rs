//! Inputs the fuzzer (`scripts/fuzz.sh`) found, replayed by the ordinary tests: each is refused with an
//! error naming the file, without a panic, and without allocating more than its size can justify (a counting
//! allocator measures the peak; this binary holds no other test, so the peak is this test's).
//! `tests/data/fuzz/TARGET/` holds the findings of fuzz target TARGET.

use std::path::{Path, PathBuf};

use medico_io::IoError;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::measure_peak;

/// Bytes a refused input of a few kB may make a reader hold at its peak.
const PEAK_LIMIT: usize = 64 << 20;

/// The reader a fuzz target drives.
fn read(target: &str, path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    match target {
        "dicom" => medico_io::dicom_io::dicom_from_bytes(path, bytes).map(drop),
        "nifti" | "nifti_gz" => medico_io::nifti_io::nifti_from_bytes(path, bytes, None).map(drop),
        "image2d" => medico_io::image2d::image_from_bytes(path, bytes).map(drop),
        "nrrd" => medico_io::nrrd_io::nrrd_from_bytes(path, bytes).map(drop),
        other => panic!("no reader for fuzz target {other}"),
    }
}

#[test]
fn fuzzer_findings_are_refused_within_bounded_memory() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let mut replayed = 0;
    for target in std::fs::read_dir(&root).unwrap() {
        let target = target.unwrap().path();
        if !target.is_dir() {
            continue;
        }
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&target).unwrap() {
            let file = file.unwrap().path();
            let bytes = std::fs::read(&file).unwrap();
            let (outcome, peak) = measure_peak(|| std::panic::catch_unwind(|| read(&name, &file, &bytes)));
            let shown = file.display();
            let error = outcome
                .unwrap_or_else(|_| panic!("{shown}: the reader panicked"))
                .expect_err(&shown.to_string());
            let message = medico_io::chain_text(&error);
            assert!(message.starts_with(&shown.to_string()), "{shown}: {message}");
            assert!(peak < PEAK_LIMIT, "{shown}: held {peak} bytes at its peak");
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no findings under {}", root.display());
    // The JPEG 2000 finding is refused by the codestream check, before the decoder.
    let file = root.join("dicom/j2k_codestream_larger_than_declared.dcm");
    let error = medico_io::dicom_io::dicom_from_bytes(&file, &std::fs::read(&file).unwrap()).unwrap_err();
    let message = medico_io::chain_text(&error);
    assert!(
        message.contains("JPEG 2000 codestream in fragment 0 holds a"),
        "{message}"
    );
}
