//! Overlays: the tensors a finetune changed, stored apart from the checkpoint it started from and applied
//! over it before export. medico ships `medico-lite` this way (LiteMedSAM's prompt encoder and mask decoder
//! after MedicoSAM's objective, in f16): megabytes in the repository and the binary instead of the whole
//! model, the base fetched and verified like any registry model.

use std::path::Path;

use medico_models::StateDict;
use safetensors::tensor::{Dtype, TensorView};

use crate::bundle::ExportError;

/// Tensors applied over a base checkpoint before export: each must exist in the checkpoint with the same
/// shape.
pub struct Overlay<'a> {
    /// Where the tensors come from, for error messages.
    pub origin: &'a Path,
    /// The tensors.
    pub tensors: &'a StateDict,
}

/// Why an overlay (or a finetune diffed into one) does not fit its base checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlayMismatch {
    /// A tensor the base checkpoint does not have.
    #[error("'{key}' is not in the base checkpoint")]
    MissingKey {
        /// The tensor's key.
        key: String,
    },
    /// A tensor whose shape differs from the base checkpoint's.
    #[error("'{key}' has shape {shape:?}, {base_shape:?} in the base checkpoint")]
    Shape {
        /// The tensor's key.
        key: String,
        /// Its shape in the overlay (or finetune).
        shape: Vec<usize>,
        /// Its shape in the base checkpoint.
        base_shape: Vec<usize>,
    },
}

/// Replaces `base`'s tensors by `overlay`'s, refusing a key `base` lacks or a shape it does not have.
pub fn apply_overlay(base: &mut StateDict, overlay: &StateDict) -> Result<(), OverlayMismatch> {
    for (key, tensor) in overlay {
        match base.get_mut(key) {
            Some(old) if old.shape == tensor.shape => *old = tensor.clone(),
            Some(old) => {
                return Err(OverlayMismatch::Shape {
                    key: key.clone(),
                    shape: tensor.shape.clone(),
                    base_shape: old.shape.clone(),
                })
            }
            None => return Err(OverlayMismatch::MissingKey { key: key.clone() }),
        }
    }
    Ok(())
}

/// The tensors of `finetuned` whose values differ from `base`'s; every key of `finetuned` must be in `base`
/// with the same shape (an overlay cannot add or reshape parameters).
pub fn changed_tensors(base: &StateDict, finetuned: &StateDict) -> Result<StateDict, OverlayMismatch> {
    let mut changed = StateDict::new();
    for (key, tensor) in finetuned {
        let old = base
            .get(key)
            .ok_or_else(|| OverlayMismatch::MissingKey { key: key.clone() })?;
        if old.shape != tensor.shape {
            return Err(OverlayMismatch::Shape {
                key: key.clone(),
                shape: tensor.shape.clone(),
                base_shape: old.shape.clone(),
            });
        }
        if old.data != tensor.data {
            changed.insert(key.clone(), tensor.clone());
        }
    }
    Ok(changed)
}

/// `base`'s tensors moved `weight` of the way to `overlay`'s (`base + weight * (overlay - base)`, for every
/// key of the overlay): weight-space ensembling of a finetune with the checkpoint it started from (WiSE-FT).
/// 0 gives `base`'s values, 1 the overlay's exactly.
pub fn blended_overlay(base: &StateDict, overlay: &StateDict, weight: f32) -> Result<StateDict, OverlayMismatch> {
    let changed = changed_tensors(base, overlay)?;
    if weight == 1.0 {
        return Ok(changed);
    }
    Ok(changed
        .into_iter()
        .map(|(key, tuned)| {
            let old = &base[&key];
            let data = old
                .data
                .iter()
                .zip(&tuned.data)
                .map(|(&b, &t)| b + weight * (t - b))
                .collect();
            let blended = medico_models::HostTensor {
                shape: tuned.shape,
                data,
            };
            (key, blended)
        })
        .collect())
}

/// How an overlay stores its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayPrecision {
    /// IEEE half precision (half the bytes; the rounding is what `checkpoint diff` reports).
    F16,
    /// The values as they are.
    F32,
}

/// The largest change storing `tensors` in `precision` makes to a value.
pub fn largest_rounding(tensors: &StateDict, precision: OverlayPrecision) -> f32 {
    match precision {
        OverlayPrecision::F16 => tensors
            .values()
            .flat_map(|t| t.data.iter().map(|&v| (v - half::f16::from_f32(v).to_f32()).abs()))
            .fold(0.0, f32::max),
        OverlayPrecision::F32 => 0.0,
    }
}

/// The safetensors bytes of `tensors` in `precision`.
pub fn overlay_bytes(tensors: &StateDict, precision: OverlayPrecision) -> Vec<u8> {
    let encoded: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(key, t)| {
            let bytes = match precision {
                OverlayPrecision::F16 => t
                    .data
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
                OverlayPrecision::F32 => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            (key.clone(), bytes, t.shape.clone())
        })
        .collect();
    let dtype = match precision {
        OverlayPrecision::F16 => Dtype::F16,
        OverlayPrecision::F32 => Dtype::F32,
    };
    let views: Vec<(&str, TensorView<'_>)> = encoded
        .iter()
        .map(|(key, bytes, shape)| {
            let view = TensorView::new(dtype, shape.clone(), bytes).expect("bytes match the shape");
            (key.as_str(), view)
        })
        .collect();
    safetensors::serialize(views, None).expect("in-memory safetensors serialize")
}

/// Writes an overlay file through a temporary file beside `path` and a rename.
pub fn write_overlay(tensors: &StateDict, precision: OverlayPrecision, path: &Path) -> Result<(), ExportError> {
    let write_error = |source: std::io::Error| ExportError::Write {
        path: path.into(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(write_error)?;
    std::io::Write::write_all(&mut temp, &overlay_bytes(tensors, precision)).map_err(write_error)?;
    temp.persist(path).map_err(|e| write_error(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use medico_models::HostTensor;

    fn tensor(data: &[f32]) -> HostTensor {
        HostTensor {
            shape: vec![data.len()],
            data: data.to_vec(),
        }
    }

    #[test]
    fn only_changed_tensors_travel_and_apply_back_over_the_base() {
        let base = StateDict::from([("a".into(), tensor(&[1.0, 2.0])), ("b".into(), tensor(&[3.0]))]);
        let mut finetuned = base.clone();
        finetuned.insert("b".into(), tensor(&[3.5]));
        let changed = changed_tensors(&base, &finetuned).unwrap();
        assert_eq!(changed.keys().collect::<Vec<_>>(), ["b"]);
        let bytes = overlay_bytes(&changed, OverlayPrecision::F16);
        let read = medico_models::checkpoint::state_dict_from_bytes(&bytes).unwrap();
        let mut rebuilt = base.clone();
        apply_overlay(&mut rebuilt, &read).unwrap();
        assert_eq!(rebuilt, finetuned);
        let reshaped = StateDict::from([("a".into(), tensor(&[1.0]))]);
        assert_eq!(
            apply_overlay(&mut rebuilt, &reshaped).unwrap_err(),
            OverlayMismatch::Shape {
                key: "a".into(),
                shape: vec![1],
                base_shape: base["a"].shape.clone(),
            }
        );
        let halfway = blended_overlay(&base, &finetuned, 0.5).unwrap();
        assert_eq!(halfway, StateDict::from([("b".into(), tensor(&[3.25]))]));
        assert_eq!(blended_overlay(&base, &finetuned, 1.0).unwrap()["b"], finetuned["b"]);
        assert_eq!(blended_overlay(&base, &finetuned, 0.0).unwrap()["b"], base["b"]);
        let unknown = StateDict::from([("c".into(), tensor(&[1.0]))]);
        assert_eq!(
            changed_tensors(&base, &unknown).unwrap_err(),
            OverlayMismatch::MissingKey { key: "c".into() }
        );
    }
}
