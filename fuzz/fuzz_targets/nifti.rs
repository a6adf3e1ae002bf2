//! NIfTI-1/2 bytes (`.nii`) through medico's reader: any outcome but a panic, a hang or a large allocation.
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
    if let Ok(volume) = medico_io::nifti_io::nifti_from_bytes(Path::new("fuzz.nii"), data, None) {
        // What every command does next: slice it along each axis.
        for axis in 0..3 {
            let _ = volume.slice(axis, volume.slices(axis) / 2);
        }
    }
});
