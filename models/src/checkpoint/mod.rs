//! Checkpoint import in pure Rust: `.safetensors`, PyTorch `torch.save` files (zip and legacy
//! serialization), flat state dicts and nested training checkpoints.
//!
//! Nested checkpoints keep their model under `model_state` (or `state_dict` / `model`); the training
//! prefixes `module.sam.`, `sam.` and `module.` are stripped, so every format yields the official keys.

mod pickle;
mod safetensors_file;
mod torch_file;

use std::collections::BTreeMap;
use std::path::Path;

pub use pickle::StorageDtype;

use crate::ModelError;
use crate::Problem;

/// A tensor read from a checkpoint, converted to f32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor from a shape and matching data.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }
}

/// Official key → tensor.
pub type StateDict = BTreeMap<String, HostTensor>;

/// Key → shape of a state dict.
pub fn shapes(state: &StateDict) -> BTreeMap<String, Vec<usize>> {
    state.iter().map(|(k, v)| (k.clone(), v.shape.clone())).collect()
}

/// Keys under which training checkpoints keep the model's state dict.
const NESTED_MODEL_KEYS: [&str; 3] = ["model_state", "state_dict", "model"];
/// Prefixes that training wrappers add to the official keys, longest first.
const TRAINING_PREFIXES: [&str; 3] = ["module.sam.", "sam.", "module."];

/// Reads a checkpoint of any supported format and returns the model's state dict with official keys.
pub fn load_checkpoint(path: &Path) -> Result<StateDict, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
        path: path.into(),
        source,
    })?;
    state_dict_from_bytes(&bytes).map_err(|source| ModelError::Checkpoint {
        path: path.into(),
        source,
    })
}

/// The state dict of a checkpoint held in memory (any supported format), official keys.
pub fn state_dict_from_bytes(bytes: &[u8]) -> Result<StateDict, Problem> {
    model_state(entries_from_bytes(bytes)?)
}

/// Key under which micro-sam's combined checkpoints keep the UNETR decoder (`{"model_state", "decoder_state"}`).
const DECODER_STATE_KEY: &str = "decoder_state";

/// Reads a semantic segmentation decoder: a flat state dict (micro-sam's published `*_decoder` files, medico's
/// own) or the `decoder_state` of a combined checkpoint; keys as torch-em names them (`base.*`, `deconv1.*`, …).
pub fn load_decoder_state(path: &Path) -> Result<StateDict, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
        path: path.into(),
        source,
    })?;
    decoder_state_from_bytes(&bytes).map_err(|source| ModelError::Checkpoint {
        path: path.into(),
        source,
    })
}

/// [`load_decoder_state`] on bytes held in memory.
pub fn decoder_state_from_bytes(bytes: &[u8]) -> Result<StateDict, Problem> {
    let entries = entries_from_bytes(bytes)?;
    if entries.iter().any(|(_, e)| matches!(e, Entry::Tensor(_))) {
        return model_state(entries);
    }
    let nested = entries
        .into_iter()
        .find_map(|(k, e)| match e {
            Entry::Nested(items) if k == DECODER_STATE_KEY => Some(items),
            _ => None,
        })
        .ok_or_else(|| {
            Problem(format!(
                "no decoder found: neither a flat state dict nor a checkpoint with '{DECODER_STATE_KEY}'"
            ))
        })?;
    model_state(nested.into_iter().map(|(k, t)| (k, Entry::Tensor(t))).collect())
}

/// The top-level entries of a checkpoint of any supported format.
fn entries_from_bytes(bytes: &[u8]) -> Result<Vec<(String, Entry)>, Problem> {
    if bytes.starts_with(b"PK\x03\x04") {
        torch_file::read_zip(bytes)
    } else if bytes.starts_with(b"\x80") {
        torch_file::read_legacy(bytes)
    } else if safetensors_file::looks_like_safetensors(bytes) {
        safetensors_file::read(bytes).map(|tensors| tensors.into_iter().map(|(k, t)| (k, Entry::Tensor(t))).collect())
    } else {
        Err(Problem::from(
            "not a checkpoint: expected safetensors, a PyTorch zip archive or a legacy torch.save pickle",
        ))
    }
}

/// A top-level entry of a checkpoint: a tensor, or a nested mapping of tensors.
pub(crate) enum Entry {
    Tensor(HostTensor),
    Nested(Vec<(String, HostTensor)>),
    Other,
}

/// BatchNorm's training-step counter: a buffer no inference or finetuning step reads, so it is dropped.
const BATCH_COUNTER_SUFFIX: &str = ".num_batches_tracked";

fn model_state(entries: Vec<(String, Entry)>) -> Result<StateDict, Problem> {
    let is_flat = entries.iter().any(|(_, e)| matches!(e, Entry::Tensor(_)));
    let tensors: Vec<(String, HostTensor)> = if is_flat {
        entries
            .into_iter()
            .filter_map(|(k, e)| match e {
                Entry::Tensor(t) => Some((k, t)),
                _ => None,
            })
            .collect()
    } else {
        let mut nested = entries.into_iter().filter_map(|(k, e)| match e {
            Entry::Nested(items) if NESTED_MODEL_KEYS.contains(&k.as_str()) => Some(items),
            _ => None,
        });
        nested.next().ok_or_else(|| {
            format!(
                "no tensors found: neither a flat state dict nor a training checkpoint with one of {NESTED_MODEL_KEYS:?}"
            )
        })?
    };
    let mut state = StateDict::new();
    for (key, tensor) in tensors {
        if key.ends_with(BATCH_COUNTER_SUFFIX) {
            continue;
        }
        let official = TRAINING_PREFIXES
            .iter()
            .find_map(|p| key.strip_prefix(p))
            .unwrap_or(&key)
            .to_string();
        if state.insert(official.clone(), tensor).is_some() {
            return Err(Problem(format!(
                "key '{official}' appears twice after stripping training prefixes"
            )));
        }
    }
    Ok(state)
}
