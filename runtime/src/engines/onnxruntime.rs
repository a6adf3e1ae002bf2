//! ONNX Runtime through `ort`, its library loaded at run time (`$ORT_DYLIB_PATH`, the project's
//! `.deps/`, or the system's), with the GPU execution providers it was built with.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::ArrayViewD;

use super::{Engine, Outputs};
use crate::RuntimeError;

/// The environment, or why the library could not be loaded (kept as text: the first failure is reported
/// to every later caller).
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
        .map_err(|reason| RuntimeError::Unavailable {
            engine: "ONNX Runtime",
            reason: reason.clone(),
        })
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

/// ONNX Runtime fusions that make medico's graphs slower on CPU. `SkipLayerNormFusion` merges the
/// residual add into the layer norm of the decoder's 4096 image tokens; on a 2-core AVX2 machine (ORT
/// 1.31/1.32) the fused kernel took 3.4 ms where the add and the plain LayerNormalization take 1.4 ms, and the
/// per-click decoder ran 34 ms with it against 24 ms without (same run).
pub const SLOW_FUSIONS: &str = "SkipLayerNormFusion";

impl OrtEngine {
    /// Loads `model` with `threads` intra-op threads (graph fusions in [`SLOW_FUSIONS`] off). The threads do
    /// not spin after a run: a predictor holds four sessions, each with its own pool, and on a 2-core
    /// machine the encoder's spinning threads took the cores from the next graph (the decoder's
    /// preparation after an encoder run: 29-34 ms spinning, 10-13 ms not; encoder and click unchanged).
    pub fn open(model: &Path, threads: usize) -> Result<Self, RuntimeError> {
        Self::open_with(model, threads, None)
    }

    /// [`OrtEngine::open`] with ONNX Runtime's profiler writing to a file that starts with `profile_prefix`
    /// (see [`OrtEngine::end_profiling`]).
    pub fn open_profiled(model: &Path, threads: usize, profile_prefix: &Path) -> Result<Self, RuntimeError> {
        Self::open_with(model, threads, Some(profile_prefix))
    }

    fn open_with(model: &Path, threads: usize, profile_prefix: Option<&Path>) -> Result<Self, RuntimeError> {
        let env = ort_environment()?;
        let fail = |e: ort::Error| RuntimeError::Load {
            path: model.into(),
            engine: "ONNX Runtime",
            source: e.into(),
        };
        let gpu = gpu_providers();
        let providers = gpu.iter().map(|(name, _)| *name).chain(["cpu"]).collect();
        let dispatch: Vec<_> = gpu.into_iter().map(|(_, ep)| ep).collect();
        let mut builder = ort::session::Session::builder(env)
            .map_err(fail)?
            .with_intra_threads(threads)
            .map_err(|e| fail(e.into()))?
            .with_disabled_optimizers(SLOW_FUSIONS)
            .map_err(|e| fail(e.into()))?
            .with_intra_op_spinning(false)
            .map_err(|e| fail(e.into()))?
            .with_execution_providers(dispatch)
            .map_err(|e| fail(e.into()))?;
        if let Some(prefix) = profile_prefix {
            builder = builder.with_profiling(prefix).map_err(|e| fail(e.into()))?;
        }
        let session = builder.commit_from_file(model).map_err(fail)?;
        Ok(Self { session, providers })
    }

    /// Ends the profiling of a session opened with [`OrtEngine::open_profiled`]; returns the profile's path
    /// (ONNX Runtime's JSON trace).
    pub fn end_profiling(&mut self) -> Result<PathBuf, RuntimeError> {
        self.session
            .end_profiling()
            .map(PathBuf::from)
            .map_err(|e| RuntimeError::Run {
                engine: "ONNX Runtime",
                source: e.into(),
            })
    }

    /// The execution providers offered to the session, in order of preference (always ending with `cpu`).
    pub fn providers(&self) -> &[&'static str] {
        &self.providers
    }
}

impl Engine for OrtEngine {
    fn run_views(&mut self, inputs: &[(&str, ArrayViewD<'_, f32>)]) -> Result<Outputs, RuntimeError> {
        let fail = |e: ort::Error| RuntimeError::Run {
            engine: "ONNX Runtime",
            source: e.into(),
        };
        let values = inputs
            .iter()
            .map(|(name, array)| {
                ort::value::TensorRef::from_array_view(array.clone())
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
