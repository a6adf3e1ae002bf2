//! The errors of training and parity: each names the file or setting involved and keeps its cause as the
//! source.

use std::path::PathBuf;

use medico_io::IoError;

/// Why a training run, a checkpoint or a parity check failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// libtorch failed.
    #[error("libtorch")]
    Torch(#[from] tch::TchError),
    /// A data or output file.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A checkpoint or architecture that cannot be used.
    #[error(transparent)]
    Model(#[from] medico_models::ModelError),
    /// The final bundle could not be exported.
    #[error(transparent)]
    Export(#[from] medico_export::ExportError),
    /// A JSON file (configuration, reference case list) that does not parse.
    #[error("{}: not a valid {what}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What it should be.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A training configuration whose values cannot work.
    #[error("{}: {problem}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A safetensors file libtorch cannot read.
    #[error("{}: cannot read the tensors", path.display())]
    Tensors {
        /// The file.
        path: PathBuf,
        /// libtorch's error.
        #[source]
        source: tch::TchError,
    },
    /// A tensor a checkpoint or reference file must hold and does not.
    #[error("{}: tensor '{key}' missing", file.display())]
    MissingTensor {
        /// The file.
        file: PathBuf,
        /// The tensor's name.
        key: String,
    },
    /// A reference file whose content contradicts itself.
    #[error("{}: {problem}", file.display())]
    Reference {
        /// The file.
        file: PathBuf,
        /// What is inconsistent.
        problem: String,
    },
    /// Another engine computing the frozen encoder's embeddings failed or disagreed with libtorch.
    #[error("{engine} as the frozen image encoder: {problem}")]
    Encoder {
        /// The engine.
        engine: String,
        /// What went wrong.
        problem: String,
    },
    /// Another rank of a data-parallel run failed or never came, or the ranks disagree.
    #[error("data-parallel training")]
    Distributed(#[from] crate::distributed::DistributedError),
    /// The device asked for cannot be used.
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
}
