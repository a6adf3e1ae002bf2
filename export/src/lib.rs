//! ONNX export of the SAM definition in `medico-models`: an ONNX-recording [`medico_models::Backend`]
//! ([`onnx_backend::OnnxBackend`]), the encoder and decoder graphs ([`graphs`]) and a structural
//! validator ([`validate`]). No libtorch, no Python, no inference engine: the protobuf messages are declared in
//! [`onnx_proto`] (prost).

pub mod bundle;
pub mod graphs;
pub mod onnx_backend;
pub mod onnx_proto;
pub mod overlay;
pub mod registry;
pub mod validate;

pub use bundle::{export_bundle, ExportError, ExportRequest, WalkOverlay};
pub use graphs::{
    decoder_model, decoder_prepare_model, decoder_prompt_model, encoder_model, matmul_model,
    segmentation_decoder_model, DecoderVariant,
};

pub use onnx_proto as pb;

/// Parses ONNX protobuf bytes.
pub fn decode_model(bytes: &[u8]) -> Result<pb::ModelProto, prost::DecodeError> {
    prost::Message::decode(bytes)
}

/// Serializes a model to ONNX protobuf bytes.
pub fn to_bytes(model: &pb::ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(model)
}
