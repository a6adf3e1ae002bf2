//! On-disk cache of slice embeddings, so that a later prompt on the same volume skips the encoder.
//!
//! One folder per (volume data, slice axis, intensity mapping, encoder graph) — the key is an xxh3-128 of
//! all four — and one file per slice: a magic tag, the shape, an xxh3-128 of the values, then the values
//! (f32 little endian). Files are written to a temporary name and renamed, so concurrent writers of the
//! same slice each publish a complete file; a file that is truncated, resized or altered fails its checks
//! and is recomputed, never trusted.

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

use crate::atomic_output::write_atomically;
use crate::IoError;

const MAGIC: &[u8; 8] = b"MDEMB01\n";

/// Why a cache file is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The file cannot be read.
    #[error("cannot read")]
    Read(#[source] std::io::Error),
    /// Shorter than its header.
    #[error("truncated header")]
    TruncatedHeader,
    /// Not starting with the magic tag.
    #[error("not an embedding file")]
    Magic,
    /// A rank beyond any embedding's.
    #[error("implausible rank {0}")]
    Rank(usize),
    /// A shape whose element count overflows.
    #[error("shape overflows")]
    Overflow,
    /// Fewer or more value bytes than the shape needs.
    #[error("{found} value bytes, the shape needs {needed}")]
    Length {
        /// Bytes present.
        found: usize,
        /// Bytes the shape needs.
        needed: usize,
    },
    /// Values that do not match their checksum.
    #[error("checksum mismatch")]
    Checksum,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A verified embedding.
    Hit(ArrayD<f32>),
    /// No file for this slice.
    Miss,
    /// A file that failed its checks; it will be rebuilt.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which check it failed.
        reason: EntryError,
    },
}

/// The cache folder of one volume/axis/intensity/encoder combination.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    dir: PathBuf,
}

/// The cache key of a volume's slices: xxh3-128 (hex) over the values, shape, axis, intensity and encoder.
pub fn cache_key(values: &[f32], shape: &[usize], axis: usize, intensity: &str, encoder_sha256: &str) -> String {
    let mut hasher = Xxh3::new();
    for v in values {
        hasher.update(&v.to_le_bytes());
    }
    for s in shape {
        hasher.update(&(*s as u64).to_le_bytes());
    }
    hasher.update(&(axis as u64).to_le_bytes());
    hasher.update(intensity.as_bytes());
    hasher.update(b"\0");
    hasher.update(encoder_sha256.as_bytes());
    format!("{:032x}", hasher.digest128())
}

impl EmbeddingCache {
    /// The cache for `key` under `root` (created on first store).
    pub fn new(root: &Path, key: &str) -> Self {
        Self { dir: root.join(key) }
    }

    /// The folder holding this volume's slice files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, slice: usize) -> PathBuf {
        self.dir.join(format!("slice-{slice:05}.emb"))
    }

    /// Looks up slice `slice`, verifying the file completely.
    pub fn load(&self, slice: usize) -> Lookup {
        let path = self.path(slice);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => {
                return Lookup::Corrupt {
                    path,
                    reason: EntryError::Read(e),
                }
            }
        };
        match decode(&bytes) {
            Ok(array) => Lookup::Hit(array),
            Err(reason) => Lookup::Corrupt { path, reason },
        }
    }

    /// Stores slice `slice` atomically.
    pub fn store(&self, slice: usize, embedding: &ArrayD<f32>) -> Result<(), IoError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| IoError::write(&self.dir, e))?;
        write_atomically(&self.path(slice), &encode(embedding))
    }
}

fn encode(array: &ArrayD<f32>) -> Vec<u8> {
    let payload: Vec<u8> = array.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = Vec::with_capacity(payload.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(array.ndim() as u32).to_le_bytes());
    for &d in array.shape() {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
    out.extend_from_slice(&xxh3_128(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The embedding in a cache file's bytes, every check passed.
pub fn decode(bytes: &[u8]) -> Result<ArrayD<f32>, EntryError> {
    let take = |at: usize, n: usize| bytes.get(at..at + n).ok_or(EntryError::TruncatedHeader);
    if take(0, 8)? != MAGIC {
        return Err(EntryError::Magic);
    }
    let ndim = u32::from_le_bytes(take(8, 4)?.try_into().expect("4 bytes")) as usize;
    if ndim > 8 {
        return Err(EntryError::Rank(ndim));
    }
    let mut shape = Vec::with_capacity(ndim);
    for i in 0..ndim {
        shape.push(u64::from_le_bytes(take(12 + 8 * i, 8)?.try_into().expect("8 bytes")) as usize);
    }
    let at = 12 + 8 * ndim;
    let checksum = u128::from_le_bytes(take(at, 16)?.try_into().expect("16 bytes"));
    let payload = &bytes[at + 16..];
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or(EntryError::Overflow)?;
    let needed = count.checked_mul(4).ok_or(EntryError::Overflow)?;
    if payload.len() != needed {
        return Err(EntryError::Length {
            found: payload.len(),
            needed,
        });
    }
    if xxh3_128(payload) != checksum {
        return Err(EntryError::Checksum);
    }
    let values: Vec<f32> = payload
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), values).expect("the length was checked against the shape"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_corruption_is_detected() {
        let root = tempfile::tempdir().unwrap();
        let cache = EmbeddingCache::new(root.path(), "k");
        let array = ArrayD::from_shape_vec(IxDyn(&[1, 2, 3, 4]), (0..24).map(|v| v as f32 * 0.5).collect()).unwrap();
        assert!(matches!(cache.load(3), Lookup::Miss));
        cache.store(3, &array).unwrap();
        match cache.load(3) {
            Lookup::Hit(back) => assert_eq!(back, array),
            other => panic!("{other:?}"),
        }
        let path = cache.path(3);
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        for (bad, reason) in [
            (good[..good.len() - 4].to_vec(), "value bytes"),
            (good[..20].to_vec(), "truncated"),
            (flipped, "checksum"),
            (b"garbage".to_vec(), "truncated"),
        ] {
            std::fs::write(&path, bad).unwrap();
            match cache.load(3) {
                Lookup::Corrupt { reason: found, .. } => {
                    assert!(found.to_string().contains(reason), "{found}")
                }
                other => panic!("{reason}: {other:?}"),
            }
        }
    }

    #[test]
    fn concurrent_writers_never_expose_a_partial_file() {
        let root = tempfile::tempdir().unwrap();
        let cache = EmbeddingCache::new(root.path(), "k");
        let array = ArrayD::from_shape_vec(IxDyn(&[1, 64, 32, 32]), (0..65536).map(|v| v as f32).collect()).unwrap();
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    for _ in 0..20 {
                        cache.store(0, &array).unwrap();
                    }
                });
            }
            scope.spawn(|| {
                for _ in 0..200 {
                    match cache.load(0) {
                        Lookup::Hit(back) => assert_eq!(back, array),
                        Lookup::Miss => {}
                        Lookup::Corrupt { reason, .. } => panic!("a reader saw a partial file: {reason}"),
                    }
                }
            });
        });
        assert!(matches!(cache.load(0), Lookup::Hit(_)));
    }

    #[test]
    fn the_key_changes_with_every_input() {
        let base = cache_key(&[1.0, 2.0], &[2, 1, 1], 2, "percentile:1,99", "abc");
        assert_ne!(base, cache_key(&[1.0, 2.5], &[2, 1, 1], 2, "percentile:1,99", "abc"));
        assert_ne!(base, cache_key(&[1.0, 2.0], &[1, 2, 1], 2, "percentile:1,99", "abc"));
        assert_ne!(base, cache_key(&[1.0, 2.0], &[2, 1, 1], 1, "percentile:1,99", "abc"));
        assert_ne!(base, cache_key(&[1.0, 2.0], &[2, 1, 1], 2, "minmax", "abc"));
        assert_ne!(base, cache_key(&[1.0, 2.0], &[2, 1, 1], 2, "percentile:1,99", "abd"));
        assert_eq!(base, cache_key(&[1.0, 2.0], &[2, 1, 1], 2, "percentile:1,99", "abc"));
    }
}
