//! Inputs the fuzzer (`scripts/fuzz.sh`, target `checkpoint`) found, replayed by the ordinary tests: each is
//! refused with an error, without a panic, and without allocating more than its size can justify (a counting
//! allocator measures the peak; this binary holds no other test, so the peak is this test's).

use std::path::PathBuf;

use medico_models::checkpoint::state_dict_from_bytes;

// The counting allocator io's reader tests use (models is below io: the file is shared, not the crate).
#[path = "../../io/tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::measure_peak;

/// Bytes a refused input of a few kB may make the reader hold at its peak.
const PEAK_LIMIT: usize = 64 << 20;

#[test]
fn fuzzer_findings_are_refused_within_bounded_memory() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz/checkpoint");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no findings in {}", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let (outcome, peak) =
            measure_peak(|| std::panic::catch_unwind(|| state_dict_from_bytes(&bytes).map(|state| state.len())));
        let name = file.file_name().unwrap().to_string_lossy();
        let error = outcome
            .unwrap_or_else(|_| panic!("{name}: the reader panicked"))
            .expect_err(&name);
        assert!(!error.0.is_empty(), "{name}: an empty message");
        assert!(peak < PEAK_LIMIT, "{name}: held {peak} bytes at its peak");
    }
}
