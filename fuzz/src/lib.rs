//! What the fuzz targets share.

/// medico contains panics inside third-party decoders (`catch_unwind`) and answers with an error; only a
/// panic that escapes the reader stops the run (libfuzzer-sys aborts on it), so the hook stays silent.
pub fn contain_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}
