//! The runtime's preprocessing reproduces the official predictor's: Pillow's bilinear resize of the raw
//! image (`resized_image`, both a downscale and an upscale), then normalization and padding (`input`).

use medico_io::preprocess::{encoder_input, resize_pillow_bilinear};
use medico_models::{Preprocessing, SamConfig};
use medico_tests::{max_abs_diff, read_arrays, reference_dir};

#[test]
fn preprocessing_matches_the_official_predictor() {
    for name in ["tiny", "small"] {
        let dir = reference_dir(name);
        let config = SamConfig::from_json_file(&dir.join("config.json")).unwrap();
        let arrays = read_arrays(&dir.join("preprocess.safetensors"));
        let image = &arrays["image"];
        let (h, w) = (image.shape()[0], image.shape()[1]);
        let raw: Vec<u8> = image.iter().map(|&v| v as u8).collect();
        let expected = &arrays["resized_image"];
        let (rh, rw) = (expected.shape()[0], expected.shape()[1]);
        let resized = resize_pillow_bilinear(&raw, (h, w), 3, (rh, rw));
        let max_gray_diff = resized
            .iter()
            .zip(expected.iter())
            .map(|(a, b)| (*a as f32 - b).abs())
            .fold(0.0f32, f32::max);
        let differing = resized
            .iter()
            .zip(expected.iter())
            .filter(|(a, b)| **a as f32 != **b)
            .count();
        println!(
            "{name}: resize {h}x{w} -> {rh}x{rw}: {differing} channel values differ, max {max_gray_diff} gray levels"
        );
        assert_eq!(differing, 0, "{name}: resized image differs from Pillow's");

        let (input, resized_hw) = encoder_input(
            &raw,
            (h, w),
            config.img_size,
            &Preprocessing::SAM,
            (config.pixel_mean, config.pixel_std),
        );
        assert_eq!(resized_hw, (rh, rw));
        let err = max_abs_diff(&input.into_dyn(), &arrays["input"]);
        println!("{name}: normalized, padded input max|Δ| {err:.3e}");
        assert!(err <= 1e-4, "{name}: input max|Δ| {err:e}");
    }
}
