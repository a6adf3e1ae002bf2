//! The predictor: set an image once (its embedding is kept), then prompt it any number of times with
//! points, a box and/or the previous low-res mask; the same results as the official `SamPredictor`.

use medico_bundle::{Bundle, GraphRole};
use medico_models::objects::{close, fill_holes};
use medico_models::prepared_decoder::PreparedImage;
use medico_models::prompt::{sparse_prompt, BoxPrompt, CoordinateMap, Point};
use medico_models::{Preprocessing, SamConfig};
use ndarray::{Array2, ArrayD, Axis, IxDyn};

pub use crate::engines::BackendChoice;
use crate::engines::{open_engine, Engine, Outputs};
use crate::prediction::interaction::Composition;
use crate::prediction::postprocess::upscale_logits;
use crate::{PromptError, RuntimeError};
use medico_io::preprocess::encoder_input;

/// The masks for one prompt.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Logits at the original image size, one per returned mask (`> mask_threshold` = inside).
    pub logits: Vec<Array2<f32>>,
    /// Predicted IoU per mask.
    pub iou: Vec<f32>,
    /// Low-resolution logits per mask (`4E x 4E`), to feed back as the next mask prompt.
    pub low_res: Vec<Array2<f32>>,
}

impl Prediction {
    /// Index of the mask with the highest predicted IoU.
    pub fn best(&self) -> usize {
        (0..self.iou.len())
            .max_by(|&a, &b| self.iou[a].total_cmp(&self.iou[b]))
            .unwrap_or(0)
    }
}

/// Which of a bundle's decoders answers a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderUse {
    /// A user's prompts: boxes, clicks and correction rounds.
    Interactive,
    /// Prompts a propagation derived from a neighbouring slice's mask: the bundle's walk decoder
    /// (`propagation_decoder_*` graphs) when it has one, else the interactive decoder.
    Propagation,
}

struct ImageState {
    embedding: ArrayD<f32>,
    original_hw: (usize, usize),
    resized_hw: (usize, usize),
    /// The interactive decoder's image-only tensors (`decoder_prepare` outputs), computed at the first click
    /// without a mask prompt.
    prepared: Option<Outputs>,
    /// The walk decoder's, likewise.
    walk_prepared: Option<Outputs>,
}

/// The per-click decoder of bundles that have one: `decoder_prepare` once per image, then
/// `decoder_prompt` per click (prompts without a mask).
struct ClickDecoder {
    prepare: Box<dyn Engine>,
    prompt: Box<dyn Engine>,
}

/// The low-res decoder graph, opened at the first prompt that needs it: with a per-click decoder only mask
/// prompts do, and opening it costs ~150 ms (LiteMedSAM, ONNX Runtime) that a one-box `segment` never needs.
struct LowResDecoder {
    graph: std::path::PathBuf,
    backend: BackendChoice,
    threads: usize,
    engine: Option<Box<dyn Engine>>,
}

impl LowResDecoder {
    fn engine(&mut self) -> Result<&mut Box<dyn Engine>, RuntimeError> {
        if self.engine.is_none() {
            self.engine = Some(open_engine(self.backend, &self.graph, self.threads)?);
        }
        Ok(self.engine.as_mut().expect("opened above"))
    }
}

/// The graph roles of one decoder.
struct DecoderRoles {
    lowres: GraphRole,
    prepare: GraphRole,
    prompt: GraphRole,
}

const INTERACTIVE_ROLES: DecoderRoles = DecoderRoles {
    lowres: GraphRole::DecoderLowres,
    prepare: GraphRole::DecoderPrepare,
    prompt: GraphRole::DecoderPrompt,
};

const WALK_ROLES: DecoderRoles = DecoderRoles {
    lowres: GraphRole::PropagationDecoderLowres,
    prepare: GraphRole::PropagationDecoderPrepare,
    prompt: GraphRole::PropagationDecoderPrompt,
};

/// One decoder's engines: the low-res graph for every prompt (a mask prompt included) and, when the bundle
/// has the pair, the per-click graphs for prompts without a mask.
struct Decoder {
    lowres: LowResDecoder,
    click: Option<ClickDecoder>,
}

impl Decoder {
    /// Opens the decoder with `roles` (the low-res graph is required).
    fn open(
        bundle: &Bundle,
        roles: &DecoderRoles,
        backend: BackendChoice,
        threads: usize,
    ) -> Result<Self, RuntimeError> {
        let lowres = required_graph(bundle, roles.lowres)?;
        let click = match (bundle.graph(roles.prepare), bundle.graph(roles.prompt)) {
            (Some(prepare), Some(prompt)) => Some(ClickDecoder {
                prepare: open_engine(backend, &prepare, threads)?,
                prompt: open_engine(backend, &prompt, threads)?,
            }),
            _ => None,
        };
        Ok(Self {
            lowres: LowResDecoder {
                engine: match click {
                    Some(_) => None,
                    None => Some(open_engine(backend, &lowres, threads)?),
                },
                graph: lowres,
                backend,
                threads,
            },
            click,
        })
    }
}

/// A bundle's walk decoder, opened at the first propagated prompt (a 2D session never pays for it).
struct WalkDecoder {
    bundle: Bundle,
    backend: BackendChoice,
    threads: usize,
    decoder: Option<Decoder>,
}

impl WalkDecoder {
    fn decoder(&mut self) -> Result<&mut Decoder, RuntimeError> {
        if self.decoder.is_none() {
            self.decoder = Some(Decoder::open(&self.bundle, &WALK_ROLES, self.backend, self.threads)?);
        }
        Ok(self.decoder.as_mut().expect("opened above"))
    }
}

/// A bundle's encoder and decoders on one engine.
pub struct Predictor {
    config: SamConfig,
    /// Fill the holes of every binary mask (the bundle's `masks.fill_holes`).
    fill_holes: bool,
    /// Close every mask a walk carries first, with a disc of this radius in input pixels (`masks.close_radius`).
    close_radius: Option<f32>,
    /// How the bundle's model composes correction rounds.
    composition: Composition,
    preprocessing: Preprocessing,
    encoder: Box<dyn Engine>,
    /// The decoder of a user's prompts.
    decoder: Decoder,
    /// The decoder of propagated prompts, when the bundle has its own.
    walk: Option<WalkDecoder>,
    image: Option<ImageState>,
}

impl Predictor {
    /// Opens a verified bundle on `backend` with `threads` threads.
    pub fn open(bundle: &Bundle, backend: BackendChoice, threads: usize) -> Result<Self, RuntimeError> {
        let walk = bundle.graph(WALK_ROLES.lowres).is_some().then(|| WalkDecoder {
            bundle: bundle.clone(),
            backend,
            threads,
            decoder: None,
        });
        Ok(Self {
            config: bundle.manifest.config.clone(),
            fill_holes: bundle.manifest.masks.as_ref().is_some_and(|m| m.fill_holes),
            close_radius: bundle.manifest.masks.as_ref().and_then(|m| m.close_radius),
            composition: Composition::for_bundle(bundle),
            preprocessing: bundle.manifest.preprocessing,
            encoder: open_engine(backend, &required_graph(bundle, GraphRole::Encoder)?, threads)?,
            decoder: Decoder::open(bundle, &INTERACTIVE_ROLES, backend, threads)?,
            walk,
            image: None,
        })
    }

    /// Whether propagated prompts have a decoder of their own (see [`DecoderUse::Propagation`]).
    pub fn has_walk_decoder(&self) -> bool {
        self.walk.is_some()
    }

    /// The engine in use (`ort` or `tract`).
    pub fn engine_name(&self) -> &'static str {
        self.encoder.name()
    }

    /// The model's configuration.
    pub fn config(&self) -> &SamConfig {
        &self.config
    }

    /// The composition of correction rounds the bundle declares (SAM's when it declares none).
    pub fn composition(&self) -> Composition {
        self.composition
    }

    /// The binary mask of `logits` (at the image's size) as the model returns masks for `usage`: above the
    /// mask threshold; a walk's masks closed first when the bundle declares `masks.close_radius` (a user's
    /// round is not: closing would undo a negative click in a notch); holes filled when it declares it.
    pub fn binary_mask(&self, usage: DecoderUse, logits: &Array2<f32>) -> Vec<bool> {
        let threshold = self.config.mask_threshold as f32;
        let hw = logits.dim();
        let mut mask: Vec<bool> = logits.iter().map(|&l| l > threshold).collect();
        if let (DecoderUse::Propagation, Some(radius)) = (usage, self.close_radius) {
            // Input pixels to the image's: the longest side was resized to the input size.
            let scale = hw.0.max(hw.1) as f32 / self.config.img_size as f32;
            mask = close(&mask, hw, radius * scale);
        }
        if self.fill_holes {
            fill_holes(&mask, hw)
        } else {
            mask
        }
    }

    /// Encodes an RGB image (`[h, w, 3]` row-major 8-bit) and keeps its embedding.
    pub fn set_image(&mut self, rgb: &[u8], original_hw: (usize, usize)) -> Result<(), RuntimeError> {
        let c = &self.config;
        let (input, resized_hw) = encoder_input(
            rgb,
            original_hw,
            c.img_size,
            &self.preprocessing,
            (c.pixel_mean, c.pixel_std),
        );
        let mut out = self.encoder.run(&[("images", input.into_dyn())])?;
        let embedding = out
            .remove("image_embeddings")
            .ok_or_else(|| missing_output("image_embeddings"))?;
        self.image = Some(ImageState {
            embedding,
            original_hw,
            resized_hw,
            prepared: None,
            walk_prepared: None,
        });
        Ok(())
    }

    /// Uses a precomputed embedding `[1, C, E, E]` for an image of `original_hw`.
    pub fn set_embedding(&mut self, embedding: ArrayD<f32>, original_hw: (usize, usize)) {
        let resized_hw = medico_models::prompt::resized_size(original_hw.0, original_hw.1, self.config.img_size);
        self.image = Some(ImageState {
            embedding,
            original_hw,
            resized_hw,
            prepared: None,
            walk_prepared: None,
        });
    }

    /// The current image embedding.
    pub fn embedding(&self) -> Option<&ArrayD<f32>> {
        self.image.as_ref().map(|i| &i.embedding)
    }

    /// Runs the decoder's image-only part for the current image now (otherwise the first click without a
    /// mask prompt does). Returns whether the bundle has a per-click decoder.
    pub fn prepare_clicks(&mut self) -> Result<bool, RuntimeError> {
        let image = self.image.as_mut().ok_or(PromptError::NoImage)?;
        match &mut self.decoder.click {
            Some(click) => prepared_image(&image.embedding, &mut image.prepared, click).map(|_| true),
            None => Ok(false),
        }
    }

    /// Predicts masks for points and/or a box (original pixels) and an optional previous low-res mask, with
    /// the interactive decoder. `multimask` returns the three multimask outputs, else the single-mask output.
    pub fn predict(
        &mut self,
        points: &[Point],
        bbox: Option<&BoxPrompt>,
        mask_input: Option<&Array2<f32>>,
        multimask: bool,
    ) -> Result<Prediction, RuntimeError> {
        self.predict_with(DecoderUse::Interactive, points, bbox, mask_input, multimask)
    }

    /// [`Self::predict`] with the decoder for `usage`.
    pub fn predict_with(
        &mut self,
        usage: DecoderUse,
        points: &[Point],
        bbox: Option<&BoxPrompt>,
        mask_input: Option<&Array2<f32>>,
        multimask: bool,
    ) -> Result<Prediction, RuntimeError> {
        let image = self.image.as_mut().ok_or(PromptError::NoImage)?;
        let (decoder, prepared) = match (usage, &mut self.walk) {
            (DecoderUse::Propagation, Some(walk)) => (walk.decoder()?, &mut image.walk_prepared),
            _ => (&mut self.decoder, &mut image.prepared),
        };
        let map = CoordinateMap::new(image.original_hw, self.config.img_size);
        let (coords, labels) = sparse_prompt(points, bbox, &map).ok_or(PromptError::Empty)?;
        let n = labels.len();
        let coords = ArrayD::from_shape_vec(IxDyn(&[1, n, 2]), coords).expect("2 per point");
        let labels = ArrayD::from_shape_vec(IxDyn(&[1, n]), labels).expect("1 per point");
        let low = self.config.low_res_size();
        let out = match (mask_input, &mut decoder.click) {
            (None, Some(click)) => {
                let prepared = prepared_image(&image.embedding, prepared, click)?;
                let mut feeds = vec![("point_coords", coords.view()), ("point_labels", labels.view())];
                for name in PreparedImage::NAMES {
                    let tensor = prepared.get(name).ok_or_else(|| missing_output(name))?;
                    feeds.push((name, tensor.view()));
                }
                click.prompt.run_views(&feeds)?
            }
            _ => {
                let (mask, has_mask) = match mask_input {
                    Some(m) if m.dim() == (low, low) => (
                        m.clone()
                            .into_shape_with_order((1, 1, low, low))
                            .expect("sizes match")
                            .into_dyn(),
                        1.0,
                    ),
                    Some(m) => {
                        return Err(PromptError::MaskSize {
                            rows: m.nrows(),
                            cols: m.ncols(),
                            side: low,
                        }
                        .into())
                    }
                    None => (ArrayD::zeros(IxDyn(&[1, 1, low, low])), 0.0),
                };
                let has_mask = ArrayD::from_elem(IxDyn(&[1]), has_mask);
                let feeds = [
                    ("image_embeddings", image.embedding.view()),
                    ("point_coords", coords.view()),
                    ("point_labels", labels.view()),
                    ("mask_input", mask.view()),
                    ("has_mask_input", has_mask.view()),
                ];
                decoder.lowres.engine()?.run_views(&feeds)?
            }
        };
        let get = |name: &str| out.get(name).ok_or_else(|| missing_output(name));
        let (masks, iou) = (get("low_res_masks")?, get("iou_predictions")?);
        let tokens = masks.shape()[1];
        let range = if multimask { 1..tokens } else { 0..1 };
        let mut prediction = Prediction {
            logits: Vec::new(),
            iou: Vec::new(),
            low_res: Vec::new(),
        };
        for t in range {
            let low_res = masks
                .index_axis(Axis(0), 0)
                .index_axis(Axis(0), t)
                .into_dimensionality::<ndarray::Ix2>()
                .map_err(|e| RuntimeError::BadOutput {
                    name: "low_res_masks".into(),
                    problem: format!("of an unexpected shape: {e}"),
                })?
                .to_owned();
            prediction.logits.push(upscale_logits(
                low_res.view(),
                self.config.img_size,
                image.resized_hw,
                image.original_hw,
            ));
            prediction.iou.push(iou[[0, t]]);
            prediction.low_res.push(low_res);
        }
        Ok(prediction)
    }
}

/// The path of `bundle`'s graph for `role`, or the error naming the bundle and the missing role.
pub fn required_graph(bundle: &Bundle, role: GraphRole) -> Result<std::path::PathBuf, RuntimeError> {
    bundle.graph(role).ok_or_else(|| RuntimeError::MissingGraph {
        dir: bundle.dir.clone(),
        role,
    })
}

/// The image's prepared tensors for one decoder, computed on first use.
fn prepared_image<'a>(
    embedding: &ArrayD<f32>,
    prepared: &'a mut Option<Outputs>,
    click: &mut ClickDecoder,
) -> Result<&'a Outputs, RuntimeError> {
    if prepared.is_none() {
        let feeds = [("image_embeddings", embedding.view())];
        *prepared = Some(click.prepare.run_views(&feeds)?);
    }
    Ok(prepared.as_ref().expect("prepared above"))
}

fn missing_output(name: &str) -> RuntimeError {
    RuntimeError::BadOutput {
        name: name.into(),
        problem: "missing".into(),
    }
}
