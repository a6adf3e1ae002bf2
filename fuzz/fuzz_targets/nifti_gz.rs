//! NIfTI bytes gzipped first (`.nii.gz`), so that mutations reach the header inside the stream.
#![no_main]

use std::io::Write;
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medico_fuzz::contain_decoder_panics();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("in memory");
    let gz = encoder.finish().expect("in memory");
    let _ = medico_io::nifti_io::nifti_from_bytes(Path::new("fuzz.nii.gz"), &gz, None);
});
