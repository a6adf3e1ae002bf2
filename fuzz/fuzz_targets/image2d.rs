//! PNG/TIFF bytes through medico's 2D reader and the RGB conversion every segmentation makes.
#![no_main]

use std::path::Path;

use medico_io::intensity::Intensity;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(image) = medico_io::image2d::image_from_bytes(Path::new("fuzz.png"), data) {
        let _ = image.to_rgb(None, Intensity::default());
    }
});
