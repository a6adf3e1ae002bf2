//! PyTorch `torch.save` files: the zip archive format (PyTorch ≥ 1.6) and the legacy format
//! (sequential pickles followed by raw storages). Tensors are read through the data-only pickle reader.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use super::pickle::{self, StorageDtype, TensorRef, Value};
use super::{Entry, HostTensor};
use crate::Problem;

/// Bytes the entries of a zip checkpoint may inflate to, per byte of the file (plus [`MIN_INFLATE_BUDGET`]):
/// PyTorch stores its entries uncompressed (ratio 1) and a deflated re-zip of float weights stays near 1, so
/// this only bounds what a corrupt size field or a zip bomb can make the reader allocate.
const MAX_INFLATION: u64 = 16;
/// Inflated bytes any zip checkpoint may hold, however small the file.
const MIN_INFLATE_BUDGET: u64 = 1 << 20;

/// Reads a zip-format `torch.save` file.
pub(super) fn read_zip(bytes: &[u8]) -> Result<Vec<(String, Entry)>, Problem> {
    let mut budget = (bytes.len() as u64).saturating_mul(MAX_INFLATION) + MIN_INFLATE_BUDGET;
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("invalid PyTorch zip archive: {e}"))?;
    let pkl_name = (0..archive.len())
        .filter_map(|i| archive.name_for_index(i).and_then(|n| n.ok()).map(|n| n.to_string()))
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .ok_or("invalid PyTorch zip archive: no <archive>/data.pkl")?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    if let Ok(order) = archive.by_name(&format!("{prefix}byteorder")) {
        let mut text = String::new();
        order
            .take(16)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read byteorder: {e}"))?;
        if text.trim() != "little" {
            return Err(Problem(format!("unsupported byte order '{}'", text.trim())));
        }
    }
    let pkl = read_entry(&mut archive, &pkl_name, &mut budget)?;
    let (root, _) = pickle::parse(&pkl)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    convert_root(root, &mut |tensor: &TensorRef| {
        let key = &tensor.storage.key;
        if !storages.contains_key(key) {
            let data = read_entry(&mut archive, &format!("{prefix}data/{key}"), &mut budget)?;
            storages.insert(key.clone(), data);
        }
        materialize(tensor, &storages[key])
    })
}

/// Reads entry `name`, whose declared size must fit in what is left of `budget` (and is taken from it).
fn read_entry(archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str, budget: &mut u64) -> Result<Vec<u8>, Problem> {
    let file = archive
        .by_name(name)
        .map_err(|e| format!("archive entry '{name}': {e}"))?;
    let declared = file.size();
    if declared > *budget {
        return Err(Problem(format!(
            "archive entry '{name}' declares {declared} bytes, more than an archive of this size holds"
        )));
    }
    *budget -= declared;
    let mut out = Vec::with_capacity(declared as usize);
    file.take(declared)
        .read_to_end(&mut out)
        .map_err(|e| format!("archive entry '{name}' is truncated or corrupt: {e}"))?;
    Ok(out)
}

/// The magic number that starts a legacy `torch.save` file.
const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;

/// Reads a legacy-format `torch.save` file.
pub(super) fn read_legacy(bytes: &[u8]) -> Result<Vec<(String, Entry)>, Problem> {
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Value, Problem> {
        let (value, used) = pickle::parse(&bytes[pos..]).map_err(|e| format!("legacy torch file, {what}: {e}"))?;
        pos += used;
        Ok(value)
    };
    match next("magic number")? {
        Value::Bytes(b) if le_u128(&b) == Some(LEGACY_MAGIC) => {}
        _ => return Err(Problem::from("not a torch.save file (legacy magic number missing)")),
    }
    next("protocol version")?;
    next("system info")?;
    let root = next("object")?;
    let keys = match next("storage keys")? {
        Value::List(keys) => keys
            .into_iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s),
                _ => Err(Problem::from("legacy torch file: storage key is not a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(Problem::from("legacy torch file: storage key list missing")),
    };
    let mut dtypes: HashMap<String, StorageDtype> = HashMap::new();
    collect_storage_dtypes(&root, &mut dtypes);
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in keys {
        let dtype = *dtypes
            .get(&key)
            .ok_or_else(|| format!("legacy torch file: storage '{key}' is never used"))?;
        let header = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| format!("truncated legacy torch file: storage '{key}' header missing"))?;
        let numel = u64::from_le_bytes(header.try_into().expect("8 bytes")) as usize;
        pos += 8;
        let len = numel
            .checked_mul(dtype.size())
            .ok_or("legacy torch file: storage size overflows")?;
        let data = bytes.get(pos..pos.saturating_add(len)).ok_or_else(|| {
            format!(
                "truncated legacy torch file: storage '{key}' needs {len} bytes, {} left",
                bytes.len().saturating_sub(pos)
            )
        })?;
        pos += len;
        storages.insert(key, data.to_vec());
    }
    convert_root(root, &mut |tensor: &TensorRef| {
        let data = storages
            .get(&tensor.storage.key)
            .ok_or_else(|| format!("legacy torch file: storage '{}' missing", tensor.storage.key))?;
        materialize(tensor, data)
    })
}

fn le_u128(bytes: &[u8]) -> Option<u128> {
    (bytes.len() <= 16).then(|| {
        let mut buf = [0u8; 16];
        buf[..bytes.len()].copy_from_slice(bytes);
        u128::from_le_bytes(buf)
    })
}

fn collect_storage_dtypes(value: &Value, out: &mut HashMap<String, StorageDtype>) {
    match value {
        Value::Tensor(t) => {
            out.insert(t.storage.key.clone(), t.storage.dtype);
        }
        Value::Tuple(items) | Value::List(items) => items.iter().for_each(|v| collect_storage_dtypes(v, out)),
        Value::Dict(items) => items.iter().for_each(|(_, v)| collect_storage_dtypes(v, out)),
        _ => {}
    }
}

/// Turns the root object into top-level entries; tensors are materialized through `load`.
fn convert_root(
    root: Value,
    load: &mut dyn FnMut(&TensorRef) -> Result<HostTensor, Problem>,
) -> Result<Vec<(String, Entry)>, Problem> {
    let Value::Dict(items) = root else {
        return Err(Problem::from("the checkpoint's top-level object is not a dict"));
    };
    let mut out = Vec::with_capacity(items.len());
    for (key, value) in items {
        let Value::Str(key) = key else { continue };
        let entry = match value {
            Value::Tensor(t) => Entry::Tensor(load(&t).map_err(|e| format!("tensor '{key}': {e}"))?),
            Value::Dict(inner) if inner.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) => {
                let mut tensors = Vec::new();
                for (k, v) in inner {
                    if let (Value::Str(k), Value::Tensor(t)) = (k, v) {
                        let tensor = load(&t).map_err(|e| format!("tensor '{key}.{k}': {e}"))?;
                        tensors.push((k, tensor));
                    }
                }
                Entry::Nested(tensors)
            }
            _ => Entry::Other,
        };
        out.push((key, entry));
    }
    Ok(out)
}

/// Copies a (possibly strided) tensor view out of its storage bytes as f32.
fn materialize(tensor: &TensorRef, storage: &[u8]) -> Result<HostTensor, Problem> {
    let dtype = tensor.storage.dtype;
    let elem = dtype.size();
    let stored = storage.len() / elem;
    let numel: usize = tensor.shape.iter().product();
    if numel > 0 {
        let last = tensor
            .shape
            .iter()
            .zip(&tensor.stride)
            .try_fold(tensor.offset, |acc, (&n, &s)| acc.checked_add((n - 1).checked_mul(s)?))
            .ok_or("tensor view overflows")?;
        if last >= stored {
            return Err(Problem(format!(
                "tensor view reaches element {last} but its storage holds {stored} (file truncated or corrupt)"
            )));
        }
    }
    let read = |i: usize| -> f32 {
        let b = &storage[i * elem..(i + 1) * elem];
        match dtype {
            StorageDtype::F32 => f32::from_le_bytes(b.try_into().expect("4")),
            StorageDtype::F64 => f64::from_le_bytes(b.try_into().expect("8")) as f32,
            StorageDtype::F16 => half::f16::from_le_bytes(b.try_into().expect("2")).to_f32(),
            StorageDtype::BF16 => half::bf16::from_le_bytes(b.try_into().expect("2")).to_f32(),
            StorageDtype::I64 => i64::from_le_bytes(b.try_into().expect("8")) as f32,
            StorageDtype::I32 => i32::from_le_bytes(b.try_into().expect("4")) as f32,
            StorageDtype::I16 => i16::from_le_bytes(b.try_into().expect("2")) as f32,
            StorageDtype::I8 => b[0] as i8 as f32,
            StorageDtype::U8 | StorageDtype::Bool => b[0] as f32,
        }
    };
    let mut data = Vec::with_capacity(numel);
    let mut index = vec![0usize; tensor.shape.len()];
    for _ in 0..numel {
        let offset = tensor.offset + index.iter().zip(&tensor.stride).map(|(i, s)| i * s).sum::<usize>();
        data.push(read(offset));
        for axis in (0..index.len()).rev() {
            index[axis] += 1;
            if index[axis] < tensor.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Ok(HostTensor::new(tensor.shape.clone(), data))
}
