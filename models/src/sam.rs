//! The whole SAM model: image encoder + prompt encoder + mask decoder, and the official mask
//! post-processing.

use crate::backend::Backend;
use crate::config::SamConfig;
use crate::image_encoder::ImageEncoder;
use crate::mask_decoder::{DecoderOutput, MaskDecoder};
use crate::params::ParamSpecs;
use crate::prepared_decoder::PreparedImage;
use crate::prompt_encoder::{DensePrompt, PromptEncoder};

/// Prompts for one decoder call, already in the padded input frame.
pub struct PromptTensors<'t, T> {
    /// Points `[B, N, 2]` and labels `[B, N]` (see [`PromptEncoder::embed_points`]); `None` for a
    /// mask-only prompt.
    pub sparse: Option<(&'t T, &'t T)>,
    /// The mask prompt.
    pub dense: DensePrompt<'t, T>,
}

/// A SAM model of a given configuration. Parameters live in the backend; this type knows the structure.
pub struct Sam {
    /// The architecture.
    pub config: SamConfig,
}

impl Sam {
    /// The model of `config`.
    pub fn new(config: SamConfig) -> Self {
        Self { config }
    }

    /// Every parameter with its official key and shape, in definition order.
    pub fn param_specs(&self) -> ParamSpecs {
        let mut specs = ParamSpecs::default();
        ImageEncoder::new(&self.config).param_specs(&mut specs);
        PromptEncoder::new(&self.config).param_specs(&mut specs);
        MaskDecoder::new(&self.config).param_specs(&mut specs);
        specs
    }

    /// The image encoder.
    pub fn image_encoder(&self) -> ImageEncoder<'_> {
        ImageEncoder::new(&self.config)
    }

    /// The prompt encoder.
    pub fn prompt_encoder(&self) -> PromptEncoder<'_> {
        PromptEncoder::new(&self.config)
    }

    /// The mask decoder.
    pub fn mask_decoder(&self) -> MaskDecoder<'_> {
        MaskDecoder::new(&self.config)
    }

    /// Image embeddings `[B, C, E, E]` of normalized, padded images `[B, 3, S, S]`.
    pub fn encode_image<B: Backend>(&self, b: &B, images: &B::Tensor) -> B::Tensor {
        self.image_encoder().forward(b, images)
    }

    /// Runs prompt encoder and mask decoder on image embeddings `[B, C, E, E]` (one row per prompt) and
    /// returns every mask token's output.
    pub fn decode<B: Backend>(
        &self,
        b: &B,
        image_embeddings: &B::Tensor,
        prompts: PromptTensors<'_, B::Tensor>,
    ) -> DecoderOutput<B::Tensor> {
        let prompt_encoder = self.prompt_encoder();
        let sparse = prompts
            .sparse
            .map(|(coords, labels)| prompt_encoder.embed_points(b, coords, labels));
        let dense = prompt_encoder.embed_dense(b, prompts.dense);
        let image_pe = prompt_encoder.dense_pe(b);
        self.mask_decoder()
            .forward(b, image_embeddings, &image_pe, sparse.as_ref(), &dense)
    }

    /// The image-only part of the decoder for one image's embeddings `[1, C, E, E]`, computed once so that
    /// each click runs only [`Sam::decode_prepared`].
    pub fn prepare_image<B: Backend>(&self, b: &B, image_embeddings: &B::Tensor) -> PreparedImage<B::Tensor> {
        let prompt_encoder = self.prompt_encoder();
        let no_mask = prompt_encoder.embed_dense(b, DensePrompt::None);
        let image_pe = prompt_encoder.dense_pe(b);
        self.mask_decoder()
            .prepare_image(b, image_embeddings, &image_pe, &no_mask)
    }

    /// [`Sam::decode`] without a mask prompt on a prepared image: points `[1, N, 2]` and labels `[1, N]`.
    pub fn decode_prepared<B: Backend>(
        &self,
        b: &B,
        prepared: &PreparedImage<B::Tensor>,
        coords: &B::Tensor,
        labels: &B::Tensor,
    ) -> DecoderOutput<B::Tensor> {
        let prompt_encoder = self.prompt_encoder();
        let sparse = prompt_encoder.embed_points(b, coords, labels);
        let image_pe = prompt_encoder.dense_pe(b);
        self.mask_decoder().forward_prepared(b, prepared, &image_pe, &sparse)
    }

    /// The official output selection: masks 1.. for multimask output, mask 0 otherwise.
    pub fn select_outputs<B: Backend>(
        &self,
        b: &B,
        output: &DecoderOutput<B::Tensor>,
        multimask: bool,
    ) -> DecoderOutput<B::Tensor> {
        let (start, end) = if multimask {
            (1, self.config.num_mask_tokens())
        } else {
            (0, 1)
        };
        DecoderOutput {
            masks: b.slice(&output.masks, 1, start, end),
            iou_predictions: b.slice(&output.iou_predictions, 1, start, end),
        }
    }

    /// Official `postprocess_masks`: low-res logits `[B, M, 4E, 4E]` → upsample to `S x S` → crop to the
    /// resized image `input_hw` → resize to the original image `original_hw` (bilinear throughout).
    pub fn postprocess_masks<B: Backend>(
        &self,
        b: &B,
        low_res: &B::Tensor,
        input_hw: (usize, usize),
        original_hw: (usize, usize),
    ) -> B::Tensor {
        let size = self.config.img_size;
        let full = b.resize_bilinear(low_res, size, size);
        let cropped = b.slice(&b.slice(&full, 2, 0, input_hw.0), 3, 0, input_hw.1);
        b.resize_bilinear(&cropped, original_hw.0, original_hw.1)
    }
}
