//! `model.json` bytes through `Bundle::open` (manifest, file names, configuration, checksums).
#![no_main]

use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(dir.path().join("encoder.onnx"), b"graph").expect("writable");
        dir
    });
    std::fs::write(dir.path().join(medico_bundle::MANIFEST), data).expect("writable");
    let _ = medico_bundle::Bundle::open(dir.path());
});
