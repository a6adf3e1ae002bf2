//! Inference engines that run exported ONNX graphs, one file each: ONNX Runtime ([`onnxruntime`], library
//! loaded at run time) and tract ([`tract`], pure Rust). Both take and return named f32 arrays.

pub mod onnxruntime;
pub mod profile;
#[cfg(feature = "tract")]
pub mod tract;

use std::collections::HashMap;
use std::path::Path;

use ndarray::{ArrayD, ArrayViewD};

use crate::RuntimeError;
pub use onnxruntime::{ort_available, OrtEngine};
#[cfg(feature = "tract")]
pub use tract::{multiply_adds, TractEngine};

/// Named f32 outputs of one run.
pub type Outputs = HashMap<String, ArrayD<f32>>;

/// Something that runs one ONNX graph.
pub trait Engine {
    /// Runs the graph on named inputs (borrowed: nothing is copied for ONNX Runtime) and returns every
    /// graph output.
    fn run_views(&mut self, inputs: &[(&str, ArrayViewD<'_, f32>)]) -> Result<Outputs, RuntimeError>;
    /// [`Engine::run_views`] on owned arrays.
    fn run(&mut self, inputs: &[(&str, ArrayD<f32>)]) -> Result<Outputs, RuntimeError> {
        let views: Vec<_> = inputs.iter().map(|(name, array)| (*name, array.view())).collect();
        self.run_views(&views)
    }
    /// A short name for reports (`ort` or `tract`).
    fn name(&self) -> &'static str;
}

/// Which inference engine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BackendChoice {
    /// ONNX Runtime if its library loads, else tract.
    Auto,
    /// ONNX Runtime (an error when its library is missing).
    Ort,
    /// tract.
    Tract,
}

/// Opens `model` on the chosen engine with `threads` intra-op threads.
pub fn open_engine(choice: BackendChoice, model: &Path, threads: usize) -> Result<Box<dyn Engine>, RuntimeError> {
    if uses_ort(choice) {
        return Ok(Box::new(OrtEngine::open(model, threads)?));
    }
    open_tract(model, threads)
}

/// Whether `choice` runs on ONNX Runtime (`auto`: when its library loads).
pub(crate) fn uses_ort(choice: BackendChoice) -> bool {
    match choice {
        BackendChoice::Ort => true,
        BackendChoice::Tract => false,
        BackendChoice::Auto => ort_available(),
    }
}

#[cfg(feature = "tract")]
fn open_tract(model: &Path, threads: usize) -> Result<Box<dyn Engine>, RuntimeError> {
    Ok(Box::new(TractEngine::open(model, threads)?))
}

#[cfg(not(feature = "tract"))]
fn open_tract(_model: &Path, _threads: usize) -> Result<Box<dyn Engine>, RuntimeError> {
    Err(tract_unavailable())
}

/// The error of a build without tract.
#[cfg(not(feature = "tract"))]
pub(crate) fn tract_unavailable() -> RuntimeError {
    RuntimeError::Unavailable {
        engine: "tract",
        reason: "this build was made without the `tract` feature".into(),
    }
}
