//! Inference for exported SAM graphs on ONNX Runtime or tract, and the host-side steps around them
//! (mask post-processing). Never links libtorch. The prompt geometry shared with training is
//! re-exported from `medico-models`.

pub mod atomic_output;
pub mod dicom_guard;
pub mod dicom_io;
pub mod embedding_cache;
pub mod engine;
pub mod image2d;
pub mod input;
pub mod intensity;
pub mod interactive_eval;
pub mod mask_prompts;
pub mod nifti2;
pub mod nifti_io;
pub mod postprocess;
pub mod predictor;
pub mod preprocess;
pub mod preview;
pub mod propagation;
pub mod resize_area;
pub mod rle_guard;
pub mod volume;
pub mod volume_eval;
pub mod volume_session;

pub use medico_models::prompt;

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A model file that cannot be loaded.
    #[error("{path}: {message}")]
    Model {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An engine that cannot run (library missing, run failure).
    #[error("{0}")]
    Backend(String),
    /// An input file that cannot be used; names the file and the problem.
    #[error("{path}: {message}")]
    Input {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An output that cannot be written.
    #[error("{path}: {message}")]
    Output {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A prompt that cannot be used.
    #[error("{0}")]
    Prompt(String),
}
