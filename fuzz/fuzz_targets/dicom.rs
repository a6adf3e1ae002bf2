//! A DICOM file's bytes through medico's reader (length and RLE guards, dicom-rs, geometry).
#![no_main]

use std::path::Path;

/// medico contains panics inside third-party decoders (`catch_unwind`) and answers with an error; only a
/// panic that escapes the reader stops the run (libfuzzer-sys aborts on it), so the hook stays silent.
fn contain_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    contain_decoder_panics();
    if let Ok(volume) = medico_io::dicom_io::dicom_from_bytes(Path::new("fuzz.dcm"), data) {
        let _ = volume.slice(2, 0);
    }
});
