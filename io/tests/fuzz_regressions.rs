//! Inputs the fuzzer (`scripts/fuzz.sh`) found, replayed by the ordinary tests: each is refused with an
//! error naming the file, without a panic, and without allocating more than its size can justify (a counting
//! allocator measures the peak; this binary holds no other test, so the peak is this test's).
//! `tests/data/fuzz/TARGET/` holds the findings of fuzz target TARGET.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use medico_io::IoError;

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

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
            let before = LIVE.load(Ordering::Relaxed);
            PEAK.store(before, Ordering::Relaxed);
            let outcome = std::panic::catch_unwind(|| read(&name, &file, &bytes));
            let peak = PEAK.load(Ordering::Relaxed) - before;
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
