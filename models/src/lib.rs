//! The SAM networks written once, generic over a tensor [`backend::Backend`], plus checkpoint import.
//!
//! The same forward code computes with tch (training, parity tests) and records ONNX graphs (export);
//! see the crate README for why this removes drift between training and deployment.

pub mod backend;
pub mod checkpoint;
pub mod clicks;
pub mod config;
pub mod encoder_config;
pub mod image_encoder;
pub mod mask_decoder;
pub mod params;
pub mod preprocessing;
pub mod prompt;
pub mod prompt_encoder;
pub mod sam;
pub mod tiny_vit;
pub mod vit;
pub mod windows;

pub use backend::Backend;
pub use checkpoint::{load_checkpoint, HostTensor, StateDict};
pub use config::SamConfig;
pub use encoder_config::{EncoderConfig, TinyVitConfig, TinyVitStem, VitConfig};
pub use preprocessing::Preprocessing;
pub use sam::Sam;

/// Errors of model configuration and checkpoint import.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration problem (unknown preset, inconsistent numbers, unreadable file).
    #[error("{0}")]
    Config(String),
    /// A checkpoint file that cannot be read; names the file and the problem.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint whose keys do not match the model.
    #[error("checkpoint does not match the model: {}", describe_mismatch(.missing, .unexpected, .misshaped))]
    KeyMismatch {
        /// Keys the model needs that the checkpoint lacks.
        missing: Vec<String>,
        /// Keys of the checkpoint the model does not have.
        unexpected: Vec<String>,
        /// Keys whose shapes differ, with both shapes.
        misshaped: Vec<String>,
    },
}

/// Keys listed per kind in a mismatch message; the rest are counted (a training checkpoint has hundreds).
const KEYS_SHOWN: usize = 8;

fn describe_mismatch(missing: &[String], unexpected: &[String], misshaped: &[String]) -> String {
    let mut parts = Vec::new();
    for (what, keys) in [
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", misshaped),
    ] {
        if !keys.is_empty() {
            let shown = keys[..keys.len().min(KEYS_SHOWN)].join(", ");
            let more = match keys.len().saturating_sub(KEYS_SHOWN) {
                0 => String::new(),
                rest => format!(" and {rest} more"),
            };
            parts.push(format!("{} {what} key(s): {shown}{more}", keys.len()));
        }
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_key_lists_are_cut_with_a_count() {
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let text = describe_mismatch(&[], &keys, &["a".into()]);
        assert_eq!(
            text,
            "20 unexpected key(s): k0, k1, k2, k3, k4, k5, k6, k7 and 12 more; 1 mis-shaped key(s): a"
        );
    }
}
