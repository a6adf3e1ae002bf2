//! The per-click decoder pair of a bundle (`decoder_prepare.onnx` once per image, `decoder_prompt.onnx` per
//! click) driven from the official decoder's feeds, for the parity tests of both SAM and LiteMedSAM.

use std::path::Path;

use medico_models::prepared_decoder::PreparedImage;
use medico_runtime::engines::{Engine, OrtEngine, Outputs, TractEngine};
use ndarray::ArrayD;

/// `decoder_prepare` and `decoder_prompt` on one engine.
pub struct ClickDecoder {
    prepare: Box<dyn Engine>,
    prompt: Box<dyn Engine>,
}

impl ClickDecoder {
    /// Both graphs of the bundle folder `dir` on `engine` (`ort` or `tract`), 2 threads.
    pub fn open(dir: &Path, engine: &str) -> Self {
        let open = |file: &str| -> Box<dyn Engine> {
            let path = dir.join(file);
            match engine {
                "ort" => Box::new(OrtEngine::open(&path, 2).unwrap()),
                _ => Box::new(TractEngine::open(&path, 2).unwrap()),
            }
        };
        Self {
            prepare: open("decoder_prepare.onnx"),
            prompt: open("decoder_prompt.onnx"),
        }
    }

    /// Runs both graphs on the official decoder's feeds (`image_embeddings`, `point_coords`,
    /// `point_labels`, `has_mask_input`, ...); `None` for a feed with a mask prompt, which this pair does
    /// not take.
    pub fn run(&mut self, feeds: &[(&str, ArrayD<f32>)]) -> Option<Outputs> {
        let get = |name: &str| &feeds.iter().find(|(n, _)| *n == name).unwrap().1;
        if get("has_mask_input").iter().any(|&v| v != 0.0) {
            return None;
        }
        let prepared = self
            .prepare
            .run(&[("image_embeddings", get("image_embeddings").clone())])
            .unwrap();
        let mut prompt_feeds = vec![
            ("point_coords", get("point_coords").clone()),
            ("point_labels", get("point_labels").clone()),
        ];
        for name in PreparedImage::NAMES {
            prompt_feeds.push((name, prepared[name].clone()));
        }
        Some(self.prompt.run(&prompt_feeds).unwrap())
    }
}
