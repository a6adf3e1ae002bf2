//! Inference engines that run exported ONNX graphs: ONNX Runtime (through `ort`, library loaded at run
//! time) and tract (pure Rust). Both take and return named f32 arrays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::ArrayD;

use crate::RuntimeError;

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
pub enum BackendChoice {
    /// ONNX Runtime if its library loads, else tract.
    Auto,
    /// ONNX Runtime (an error when its library is missing).
    Ort,
    /// tract.
    Tract,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "ort" => Ok(Self::Ort),
            "tract" => Ok(Self::Tract),
            other => Err(format!("unknown backend '{other}' (expected auto, ort or tract)")),
        }
    }
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

// ---------------------------------------------------------------- ONNX Runtime

static ORT_ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Where the ONNX Runtime library is looked for: `$ORT_DYLIB_PATH` alone when it is set (an explicit
/// choice is never second-guessed); otherwise the project's set-up folder (`.deps/onnxruntime/lib`, from
/// `scripts/setup.sh`), then the system's library path.
pub fn ort_library_candidates() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return vec![PathBuf::from(path)];
    }
    vec![
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/onnxruntime/lib/libonnxruntime.so"),
        PathBuf::from("libonnxruntime.so"),
    ]
}

fn ort_environment() -> Result<&'static ort::environment::Environment, RuntimeError> {
    ORT_ENV
        .get_or_init(|| {
            let mut tried = Vec::new();
            for candidate in ort_library_candidates() {
                let is_bare_name = candidate.components().count() == 1;
                if !is_bare_name && !candidate.exists() {
                    tried.push(format!("{} (not found)", candidate.display()));
                    continue;
                }
                match ort::init_from(&candidate) {
                    Ok(builder) => {
                        return builder
                            .with_name("medico")
                            .build()
                            .map_err(|e| format!("ONNX Runtime from {}: {e}", candidate.display()))
                    }
                    Err(e) => tried.push(format!("{} ({e})", candidate.display())),
                }
            }
            Err(format!("ONNX Runtime library not found; tried {}", tried.join(", ")))
        })
        .as_ref()
        .map_err(|e| RuntimeError::Backend(e.clone()))
}

/// True when the ONNX Runtime library can be loaded.
pub fn ort_available() -> bool {
    ort_environment().is_ok()
}

/// A graph on ONNX Runtime: TensorRT and CUDA execution providers when the loaded library provides them
/// (each falls back silently to the next when it cannot start, e.g. without a GPU or TensorRT libraries),
/// else CPU.
pub struct OrtEngine {
    session: ort::session::Session,
    providers: Vec<&'static str>,
}

/// GPU execution providers the loaded ONNX Runtime library was built with, best first.
fn gpu_providers() -> Vec<(&'static str, ort::ep::ExecutionProviderDispatch)> {
    use ort::ep::ExecutionProvider;
    let mut eps = Vec::new();
    if ort::ep::TensorRT::is_available().unwrap_or(false) {
        eps.push(("tensorrt", ort::ep::TensorRT::default().build()));
    }
    if ort::ep::CUDA::is_available().unwrap_or(false) {
        eps.push(("cuda", ort::ep::CUDA::default().build()));
    }
    eps
}

impl OrtEngine {
    /// Loads `model` with `threads` intra-op threads.
    pub fn open(model: &Path, threads: usize) -> Result<Self, RuntimeError> {
        let env = ort_environment()?;
        let fail = |e: ort::Error| RuntimeError::Model {
            path: model.display().to_string(),
            message: format!("ONNX Runtime: {e}"),
        };
        let gpu = gpu_providers();
        let providers = gpu.iter().map(|(name, _)| *name).chain(["cpu"]).collect();
        let dispatch: Vec<_> = gpu.into_iter().map(|(_, ep)| ep).collect();
        let session = ort::session::Session::builder(env)
            .map_err(fail)?
            .with_intra_threads(threads)
            .map_err(|e| fail(e.into()))?
            .with_execution_providers(dispatch)
            .map_err(|e| fail(e.into()))?
            .commit_from_file(model)
            .map_err(fail)?;
        Ok(Self { session, providers })
    }

    /// The execution providers offered to the session, in order of preference (always ending with `cpu`).
    pub fn providers(&self) -> &[&'static str] {
        &self.providers
    }
}

impl Engine for OrtEngine {
    fn run(&mut self, inputs: &[(&str, ArrayD<f32>)]) -> Result<Outputs, RuntimeError> {
        let fail = |e: ort::Error| RuntimeError::Backend(format!("ONNX Runtime: {e}"));
        let values = inputs
            .iter()
            .map(|(name, array)| {
                ort::value::TensorRef::from_array_view(array.view())
                    .map(|t| (name.to_string(), ort::session::SessionInputValue::from(t)))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let outputs = self.session.run(values).map_err(fail)?;
        let mut result = Outputs::new();
        for (name, value) in outputs.iter() {
            let array = value.try_extract_array::<f32>().map_err(fail)?;
            result.insert(name.to_string(), array.to_owned());
        }
        Ok(result)
    }

    fn name(&self) -> &'static str {
        "ort"
    }
}

// ---------------------------------------------------------------- tract

/// A graph on tract, optimized once for its declared input shapes (symbolic dims stay symbolic).
pub struct TractEngine {
    plan: std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl TractEngine {
    /// Loads and optimizes `model`; matrix products use `threads` threads.
    pub fn open(model: &Path, threads: usize) -> Result<Self, RuntimeError> {
        use tract_onnx::prelude::*;
        set_tract_threads(threads);
        let fail = |message: String| RuntimeError::Model {
            path: model.display().to_string(),
            message,
        };
        // tract panics instead of returning errors on some malformed graphs.
        let loaded = std::panic::catch_unwind(|| -> TractResult<_> {
            let inference = tract_onnx::onnx().model_for_path(model)?;
            let inputs = inference
                .input_outlets()?
                .iter()
                .map(|o| inference.node(o.node).name.clone())
                .collect::<Vec<_>>();
            let outputs = inference
                .output_outlets()?
                .iter()
                .map(|o| {
                    inference
                        .outlet_label(*o)
                        .map(str::to_string)
                        .unwrap_or_else(|| inference.node(o.node).name.clone())
                })
                .collect::<Vec<_>>();
            let plan = inference.into_optimized()?.into_runnable()?;
            Ok((plan, inputs, outputs))
        })
        .map_err(|_| fail("tract panicked while loading the graph".into()))?
        .map_err(|e| fail(format!("tract: {e:?}")))?;
        let (plan, inputs, outputs) = loaded;
        Ok(Self { plan, inputs, outputs })
    }
}

fn set_tract_threads(threads: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    if threads > 1 {
        set_default_executor(Executor::multithread(threads));
    }
}

impl Engine for TractEngine {
    fn run(&mut self, inputs: &[(&str, ArrayD<f32>)]) -> Result<Outputs, RuntimeError> {
        use tract_onnx::prelude::*;
        let mut ordered = TVec::new();
        for name in &self.inputs {
            let array = inputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a.clone())
                .ok_or_else(|| RuntimeError::Backend(format!("tract: input '{name}' not given")))?;
            ordered.push(Tensor::from(array).into());
        }
        let plan = &self.plan;
        let outputs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan.run(ordered)))
            .map_err(|_| RuntimeError::Backend("tract panicked while running the graph".into()))?
            .map_err(|e| RuntimeError::Backend(format!("tract: {e:?}")))?;
        let mut result = Outputs::new();
        for (name, value) in self.outputs.iter().zip(outputs) {
            let array = value
                .to_plain_array_view::<f32>()
                .map_err(|e| RuntimeError::Backend(format!("tract output '{name}': {e:?}")))?
                .to_owned();
            result.insert(name.clone(), array);
        }
        Ok(result)
    }

    fn name(&self) -> &'static str {
        "tract"
    }
}
