//! tract, pure Rust: graphs optimized once for their declared input shapes (a symbolic batch fixed to one);
//! its panics on malformed graphs are contained and reported as errors.

use std::path::Path;

use ndarray::ArrayViewD;

use super::{Engine, Outputs};
use crate::RuntimeError;
use medico_io::error::Cause;

/// A graph on tract, optimized once for its declared input shapes (symbolic dims stay symbolic).
pub struct TractEngine {
    plan: std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl TractEngine {
    /// Loads and optimizes `model` for one image per run (see [`fix_batch_to_one`]); matrix products use
    /// `threads` threads.
    pub fn open(model: &Path, threads: usize) -> Result<Self, RuntimeError> {
        use tract_onnx::prelude::*;
        set_tract_threads(threads);
        let (plan, inputs, outputs) = contained("loading the graph", load_error(model), || -> TractResult<_> {
            let mut inference = tract_onnx::onnx().model_for_path(model)?;
            fix_batch_to_one(&mut inference)?;
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
        })?;
        Ok(Self { plan, inputs, outputs })
    }

    /// Runs the graph `runs` times on `inputs`, timing every node: milliseconds per run by op name (tract's
    /// optimized ops, e.g. `OptMatMul`), most expensive first.
    pub fn op_times(
        &mut self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
        runs: usize,
    ) -> Result<super::profile::OpTimes, RuntimeError> {
        use std::collections::HashMap;
        use tract_onnx::prelude::*;
        use tract_onnx::tract_core::plan::{eval, SimpleState};
        let ordered = self.ordered_inputs(inputs)?;
        let plan = &self.plan;
        let mut times: HashMap<String, f64> = HashMap::new();
        contained("running the graph", run_error, || -> TractResult<()> {
            let mut state = SimpleState::new(plan)?;
            for _ in 0..runs {
                state.run_plan_with_eval(ordered.clone(), |ctx, op_state, node, input| {
                    let start = std::time::Instant::now();
                    let out = eval(ctx, op_state, node, input);
                    *times.entry(node.op().name().to_string()).or_default() += start.elapsed().as_secs_f64() * 1e3;
                    out
                })?;
            }
            Ok(())
        })?;
        Ok(super::profile::sorted(times, runs))
    }

    /// The inputs in the graph's order, as tract values.
    fn ordered_inputs(
        &self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
    ) -> Result<tract_onnx::prelude::TVec<tract_onnx::prelude::TValue>, RuntimeError> {
        use tract_onnx::prelude::*;
        let mut ordered = TVec::new();
        for name in &self.inputs {
            let array = inputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a.to_owned())
                .ok_or_else(|| RuntimeError::MissingInput(name.clone()))?;
            ordered.push(Tensor::from(array).into());
        }
        Ok(ordered)
    }
}

/// The exporter's name for the symbolic batch dimension of the encoder's input.
const BATCH: &str = "batch";

/// Sets a symbolic batch dimension to 1: medico runs every graph one image at a time, and tract lowers a
/// depthwise convolution of unknown batch to im2col plus a matrix product per channel (LiteMedSAM's TinyViT
/// encoder: 9.96 s under tract's per-node profile, 1.84 s with the batch known).
fn fix_batch_to_one(model: &mut tract_onnx::prelude::InferenceModel) -> tract_onnx::prelude::TractResult<()> {
    use tract_onnx::prelude::*;
    use tract_onnx::tract_hir::infer::Factoid;
    for index in 0..model.inputs.len() {
        let Some(dims) = model.input_fact(index)?.shape.concretize() else {
            continue;
        };
        if !dims.iter().any(|d| d.to_string() == BATCH) {
            continue;
        }
        let fixed: TVec<TDim> = dims
            .iter()
            .map(|d| {
                if d.to_string() == BATCH {
                    TDim::from(1)
                } else {
                    d.clone()
                }
            })
            .collect();
        let datum = model
            .input_fact(index)?
            .datum_type
            .concretize()
            .unwrap_or(DatumType::F32);
        model.set_input_fact(index, datum.fact(fixed).into())?;
    }
    Ok(())
}

fn set_tract_threads(threads: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    if threads > 1 {
        set_default_executor(Executor::multithread(threads));
    }
}

/// Runs tract's `work` with its panics contained (tract panics instead of returning errors on some
/// malformed graphs); either failure becomes an error through `wrap`.
fn contained<T>(
    doing: &str,
    wrap: impl Fn(Cause) -> RuntimeError,
    work: impl FnOnce() -> tract_onnx::prelude::TractResult<T>,
) -> Result<T, RuntimeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .map_err(|_| wrap(format!("tract panicked while {doing}").into()))?
        .map_err(|e| wrap(format!("{e:?}").into()))
}

/// The error of a graph tract could not load or analyse.
fn load_error(model: &Path) -> impl Fn(Cause) -> RuntimeError + '_ {
    move |source| RuntimeError::Load {
        path: model.into(),
        engine: "tract",
        source,
    }
}

fn run_error(source: Cause) -> RuntimeError {
    RuntimeError::Run {
        engine: "tract",
        source,
    }
}

impl Engine for TractEngine {
    fn run_views(&mut self, inputs: &[(&str, ArrayViewD<'_, f32>)]) -> Result<Outputs, RuntimeError> {
        let ordered = self.ordered_inputs(inputs)?;
        let plan = &self.plan;
        let outputs = contained("running the graph", run_error, || plan.run(ordered))?;
        let mut result = Outputs::new();
        for (name, value) in self.outputs.iter().zip(outputs) {
            let array = value
                .to_plain_array_view::<f32>()
                .map_err(|e| run_error(format!("output '{name}': {e:?}").into()))?
                .to_owned();
            result.insert(name.clone(), array);
        }
        Ok(result)
    }

    fn name(&self) -> &'static str {
        "tract"
    }
}

/// Multiply-adds of one run of the graph at `model` for concrete input shapes (inputs not listed keep their
/// declared shapes), from tract's cost model: matrix products and convolutions; element-wise work is not
/// counted.
pub fn multiply_adds(model: &Path, shapes: &[(&str, &[usize])]) -> Result<u64, RuntimeError> {
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::ops::Cost;
    contained("analysing the graph", load_error(model), || -> TractResult<u64> {
        let mut inference = tract_onnx::onnx().model_for_path(model)?;
        for index in 0..inference.inputs.len() {
            let name = inference.node(inference.inputs[index].node).name.clone();
            if let Some((_, shape)) = shapes.iter().find(|(n, _)| *n == name) {
                inference.set_input_fact(index, f32::fact(shape.iter().copied()).into())?;
            }
        }
        let typed = inference.into_typed()?.into_decluttered()?;
        let mut total = 0u64;
        for node in typed.nodes() {
            let facts = typed.node_input_facts(node.id)?;
            for (cost, count) in node.op.cost(&facts)? {
                if matches!(cost, Cost::FMA(_)) {
                    total += u64::try_from(count.to_i64()?).unwrap_or(0);
                }
            }
        }
        Ok(total)
    })
}
