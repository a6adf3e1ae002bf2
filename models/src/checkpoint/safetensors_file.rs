//! `.safetensors` files, through the `safetensors` crate.

use safetensors::{Dtype, SafeTensors};

use super::HostTensor;
use crate::Problem;

/// True when `bytes` start with a plausible safetensors header (u64 length, then a JSON object).
pub(super) fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() >= 9 && bytes[8] == b'{'
}

/// Every tensor of a safetensors file, converted to f32.
pub(super) fn read(bytes: &[u8]) -> Result<Vec<(String, HostTensor)>, Problem> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| format!("invalid safetensors file: {e}"))?;
    let mut out = Vec::new();
    for (name, view) in file.tensors() {
        let data = to_f32(view.dtype(), view.data()).map_err(|e| format!("tensor '{name}': {e}"))?;
        out.push((name, HostTensor::new(view.shape().to_vec(), data)));
    }
    Ok(out)
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>, Problem> {
    let chunks = |n: usize| bytes.chunks_exact(n);
    Ok(match dtype {
        Dtype::F32 => chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
            .collect(),
        Dtype::F64 => chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
            .collect(),
        Dtype::F16 => chunks(2)
            .map(|c| half::f16::from_le_bytes(c.try_into().expect("2")).to_f32())
            .collect(),
        Dtype::BF16 => chunks(2)
            .map(|c| half::bf16::from_le_bytes(c.try_into().expect("2")).to_f32())
            .collect(),
        Dtype::I64 => chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8")) as f32)
            .collect(),
        Dtype::I32 => chunks(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4")) as f32)
            .collect(),
        Dtype::U8 | Dtype::BOOL => bytes.iter().map(|&b| b as f32).collect(),
        other => return Err(Problem(format!("unsupported dtype {other:?}"))),
    })
}
