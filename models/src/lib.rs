//! The SAM networks written once, generic over a tensor [`backend::Backend`], plus checkpoint import.
//!
//! The same forward code computes with tch (training, parity tests) and records ONNX graphs (export);
//! see the crate README for why this removes drift between training and deployment.

pub mod backend;
pub mod checkpoint;
pub mod clicks;
pub mod config;
pub mod distance;
pub mod encoder_config;
pub mod image_encoder;
pub mod mask_decoder;
pub mod objects;
pub mod params;
pub mod prepared_decoder;
pub mod preprocessing;
pub mod prompt;
pub mod prompt_encoder;
pub mod sam;
pub mod stop_rule;
pub mod tiny_vit;
pub mod unetr;
pub mod vit;
pub mod windows;

pub use backend::Backend;
pub use checkpoint::{load_checkpoint, load_decoder_state, HostTensor, StateDict};
pub use config::SamConfig;
pub use encoder_config::{EncoderConfig, TinyVitConfig, TinyVitStem, VitConfig};
pub use preprocessing::Preprocessing;
pub use sam::Sam;
pub use unetr::{UnetrConfig, UnetrDecoder};

/// A rule a configuration or a checkpoint stream breaks, in words (e.g. "img_size must be a multiple of
/// patch_size", "truncated pickle"). No caller branches on these; the type keeps them apart from other text
/// and lets [`ModelError`] carry them as its source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Problem(pub String);

impl From<String> for Problem {
    fn from(text: String) -> Self {
        Problem(text)
    }
}

impl From<&str> for Problem {
    fn from(text: &str) -> Self {
        Problem(text.into())
    }
}

/// Errors of model configuration and checkpoint import.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration problem (unknown preset, inconsistent numbers, an architecture that cannot be
    /// inferred).
    #[error("{0}")]
    Config(Problem),
    /// A file that cannot be read.
    #[error("{}: cannot read", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file that is not a SAM configuration or whose numbers do not fit together.
    #[error("{}: not a usable SAM configuration", path.display())]
    ConfigFile {
        /// The file.
        path: std::path::PathBuf,
        /// The parse error or broken rule.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A checkpoint file medico cannot import; names the file, the source says why.
    #[error("{}: not a usable checkpoint", path.display())]
    Checkpoint {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        #[source]
        source: Problem,
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

impl ModelError {
    /// A configuration error described by `problem`.
    pub(crate) fn config(problem: impl Into<Problem>) -> Self {
        ModelError::Config(problem.into())
    }
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
