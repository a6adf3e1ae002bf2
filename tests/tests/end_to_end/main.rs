//! End-to-end tests across medico's crates, one test binary (each separately linked binary costs disk and link
//! time on CI's two cores).

mod checkpoint_to_embeddings;
mod click_decoder;
mod lite_medsam;
mod medical_io;
mod medico_lite;
mod onnx_export;
mod predictor;
mod preprocess;
mod unetr_parity;
mod volume_session;
