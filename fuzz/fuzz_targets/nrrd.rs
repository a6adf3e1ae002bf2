//! NRRD bytes (`.nrrd`, attached header) through medico's reader: any outcome but a panic, a hang or a
//! large allocation.
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medico_fuzz::contain_decoder_panics();
    if let Ok(volume) = medico_io::nrrd_io::nrrd_from_bytes(Path::new("fuzz.nrrd"), data) {
        for axis in 0..3 {
            let _ = volume.slice(axis, volume.slices(axis) / 2);
        }
    }
});
