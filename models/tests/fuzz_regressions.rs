//! Inputs the fuzzer (`scripts/fuzz.sh`, target `checkpoint`) found, replayed by the ordinary tests: each is
//! refused with an error, without a panic, and without allocating more than its size can justify (a counting
//! allocator measures the peak; this binary holds no other test, so the peak is this test's).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use medico_models::checkpoint::state_dict_from_bytes;

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
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(|| state_dict_from_bytes(&bytes).map(|state| state.len()));
        let peak = PEAK.load(Ordering::Relaxed) - before;
        let name = file.file_name().unwrap().to_string_lossy();
        let error = outcome
            .unwrap_or_else(|_| panic!("{name}: the reader panicked"))
            .expect_err(&name);
        assert!(!error.0.is_empty(), "{name}: an empty message");
        assert!(peak < PEAK_LIMIT, "{name}: held {peak} bytes at its peak");
    }
}
