//! One image at a time: embeddings, prompt → mask, previews.

pub mod interaction;
pub mod postprocess;
pub mod predictor;
pub mod preview;
