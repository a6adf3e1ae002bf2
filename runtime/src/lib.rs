//! Inference for exported SAM bundles, in rooms by job: [`engines`] (ONNX Runtime, tract), [`prediction`]
//! (one image: encoder input, embeddings, prompt → mask, previews, the embedding cache), [`volume`]
//! (prompts derived from masks, propagation through a volume, sessions) and [`evaluation`] (simulated
//! interactive prompting in 2D and 3D). Medical images come in through `medico-io`, bundles through
//! `medico-bundle`; never links libtorch, the exporter or a download client. The prompt geometry shared
//! with training is re-exported from `medico-models`.

pub mod engines;
pub mod evaluation;
pub mod prediction;
pub mod volume;

use std::path::PathBuf;

use medico_bundle::{BundleError, GraphRole};
use medico_io::error::Cause;
use medico_io::IoError;
pub use medico_models::prompt;

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// An input or output file.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A bundle that cannot be trusted.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A bundle without a graph the runtime needs.
    #[error("{}: the bundle has no '{role}' graph", dir.display())]
    MissingGraph {
        /// The bundle folder.
        dir: PathBuf,
        /// The missing role.
        role: GraphRole,
    },
    /// A bundle without a semantic segmentation head, asked for labels.
    #[error(
        "{}: the bundle has no semantic segmentation head (model.json lists no 'segmentation_decoder' graph and \
         no classes); use a model with one (medico-lite) or export one with `medico-cli export \
         --segmentation-decoder DECODER --classes NAMES`",
        dir.display()
    )]
    NoSemanticHead {
        /// The bundle folder.
        dir: PathBuf,
    },
    /// An engine that cannot be used here (its library is missing).
    #[error("{engine} is not available: {reason}")]
    Unavailable {
        /// The engine.
        engine: &'static str,
        /// Why.
        reason: String,
    },
    /// A graph an engine cannot load.
    #[error("{}: {engine} cannot load this graph", path.display())]
    Load {
        /// The graph file.
        path: PathBuf,
        /// The engine.
        engine: &'static str,
        /// The engine's error.
        #[source]
        source: Cause,
    },
    /// A run that failed inside the engine.
    #[error("{engine} failed while running the graph")]
    Run {
        /// The engine.
        engine: &'static str,
        /// The engine's error.
        #[source]
        source: Cause,
    },
    /// A graph input the caller did not give.
    #[error("graph input '{0}' not given")]
    MissingInput(String),
    /// A graph that does not produce what the bundle format promises.
    #[error("the graph's output '{name}' is {problem}")]
    BadOutput {
        /// The output.
        name: String,
        /// What is wrong ("missing", a shape).
        problem: String,
    },
    /// A prompt that cannot be used.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// Work its caller stopped before the end (a server request past its deadline, or whose client left).
    #[error("stopped before the end: {0}")]
    Interrupted(String),
    /// A bundle whose declared propagation settings medico cannot use.
    #[error("{}: model.json's propagation settings: {problem}", dir.display())]
    Propagation {
        /// The bundle folder.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Why a prompt or a request on a volume cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// A prompt before any image was set.
    #[error("no image set")]
    NoImage,
    /// Neither points nor a box.
    #[error("a prompt needs at least one point or a box (a mask alone cannot be fed to the decoder)")]
    Empty,
    /// A mask prompt of the wrong size.
    #[error("mask prompt is {rows}x{cols}, the model takes {side}x{side}")]
    MaskSize {
        /// Its rows.
        rows: usize,
        /// Its columns.
        cols: usize,
        /// The model's low-resolution side.
        side: usize,
    },
    /// Propagation without any annotated slice.
    #[error("propagation needs at least one annotated slice")]
    NoAnnotation,
    /// An annotated slice past the volume.
    #[error("annotated slice {index} is outside the volume ({slices} slices)")]
    AnnotationOutside {
        /// The annotated slice.
        index: usize,
        /// Slices in the volume.
        slices: usize,
    },
    /// A slice index past the volume.
    #[error("slice {index} is outside the volume ({slices} slices along axis {axis})")]
    SliceOutside {
        /// The index asked for.
        index: usize,
        /// Slices along the axis.
        slices: usize,
        /// The axis.
        axis: usize,
    },
    /// Labels on another grid than the image.
    #[error("label volume {labels:?} and image volume {image:?} differ in shape")]
    LabelShape {
        /// The label volume's shape.
        labels: Vec<usize>,
        /// The image volume's shape.
        image: Vec<usize>,
    },
}
