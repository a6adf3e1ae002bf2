//! An embedding-cache file's bytes through its decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = medico_io::embedding_cache::decode(data);
});
