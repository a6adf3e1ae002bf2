//! ONNX export of the SAM definition in `medico-models`: an ONNX-recording [`medico_models::Backend`]
//! ([`onnx_backend::OnnxBackend`]), the encoder and decoder graphs ([`graphs`]) and a structural
//! validator ([`validate`]). No libtorch, no Python: protobuf types are `tract_onnx::pb` (prost).

pub mod bundle;
pub mod graphs;
pub mod onnx_backend;
pub mod registry;
pub mod validate;

pub use bundle::{export_bundle, Bundle, BundleError, ExportRequest, Manifest, Provenance};
pub use graphs::{decoder_model, encoder_model, DecoderVariant};

pub use tract_onnx::pb;

/// Parses ONNX protobuf bytes.
pub fn decode_model(bytes: &[u8]) -> Result<pb::ModelProto, prost::DecodeError> {
    prost::Message::decode(bytes)
}

/// Serializes a model to ONNX protobuf bytes.
pub fn to_bytes(model: &tract_onnx::pb::ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(model)
}
