//! The tch (libtorch) side of medico: the [`backend::TchBackend`] on which the SAM definition of
//! `medico-models` computes (CPU or CUDA, f32 or bf16), device selection, and the parity check against
//! the official implementation's reference outputs, and MedicoSAM's training objective with its trainer.

pub mod adamw;
pub mod backend;
pub mod data;
pub mod device;
pub mod distributed;
pub mod embeddings;
pub mod error;
pub mod objective;
pub mod parity;
pub mod run;
pub mod run_config;
pub mod semantic;
pub mod trainer;

pub use backend::{TchBackend, TchTensor};
pub use device::{select_device, DeviceChoice};
pub use error::TrainError;
