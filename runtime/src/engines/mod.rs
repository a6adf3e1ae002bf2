//! Inference engines that run exported ONNX graphs, one file each: ONNX Runtime ([`onnxruntime`], library
//! loaded at run time) and tract ([`tract`], pure Rust). Both take and return named f32 arrays.

pub mod onnxruntime;
pub mod tract;

use std::collections::HashMap;
use std::path::Path;

use ndarray::ArrayD;

use crate::RuntimeError;
pub use onnxruntime::{ort_available, OrtEngine};
pub use tract::TractEngine;

/// Named f32 outputs of one run.
pub type Outputs = HashMap<String, ArrayD<f32>>;

/// Something that runs one ONNX graph.
pub trait Engine {
    /// Runs the graph on named inputs and returns every graph output.
    fn run(&mut self, inputs: &[(&str, ArrayD<f32>)]) -> Result<Outputs, RuntimeError>;
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
    let use_ort = match choice {
        BackendChoice::Ort => true,
        BackendChoice::Tract => false,
        BackendChoice::Auto => ort_available(),
    };
    Ok(if use_ort {
        Box::new(OrtEngine::open(model, threads)?)
    } else {
        Box::new(TractEngine::open(model, threads)?)
    })
}
