//! Inference runtime for exported SAM bundles (ONNX Runtime and tract backends, preprocessing,
//! prompting, propagation and medical I/O). The backends land with the runtime issue; the prompt
//! geometry shared with training is re-exported from `medico-models`.

pub use medico_models::prompt;
