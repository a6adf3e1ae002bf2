//! A DICOM file's bytes through medico's reader (length and RLE guards, dicom-rs, geometry).
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medico_fuzz::contain_decoder_panics();
    if let Ok(volume) = medico_io::dicom_io::dicom_from_bytes(Path::new("fuzz.dcm"), data) {
        let _ = volume.slice(2, 0);
    }
});
