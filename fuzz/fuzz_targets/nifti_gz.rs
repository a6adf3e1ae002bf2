//! NIfTI bytes gzipped first (`.nii.gz`), so that mutations reach the header inside the stream.
#![no_main]

use std::io::Write;
use std::path::Path;

/// medico contains panics inside third-party decoders (`catch_unwind`) and answers with an error; only a
/// panic that escapes the reader stops the run (libfuzzer-sys aborts on it), so the hook stays silent.
fn contain_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    contain_decoder_panics();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("in memory");
    let gz = encoder.finish().expect("in memory");
    let _ = medico_io::nifti_io::nifti_from_bytes(Path::new("fuzz.nii.gz"), &gz, None);
});
