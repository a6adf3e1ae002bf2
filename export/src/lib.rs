//! ONNX export of the SAM definition in `medico-models` and model bundles.
//!
//! The ONNX backend of [`medico_models::Backend`] lands with the export issue; this crate already
//! re-exports checkpoint import so that its users read checkpoints through one path.

pub use medico_models::checkpoint::load_checkpoint;
