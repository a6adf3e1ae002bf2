//! Image embeddings of a frozen image encoder, computed once per training sample and kept on disk, so that
//! finetuning the prompt encoder and mask decoder runs only those two per step (on a 2-core CPU the encoder
//! is most of a step's time). The cache is the runtime's embedding cache format under a folder per encoder
//! (an xxh3-128 of its parameters) and per source (the sample's image data, axis and preprocessing, see
//! [`crate::data::SampleId`]), one verified file per slice: a rerun, or a second run on the same data and
//! encoder (the `medsam` control beside `medicosam`), computes nothing again.

use std::path::{Path, PathBuf};

use medico_io::embedding_cache::{EmbeddingCache, Lookup};
use medico_models::Sam;
use ndarray::{ArrayD, IxDyn};
use tch::{Device, Kind, Tensor};
use xxhash_rust::xxh3::Xxh3;

use crate::backend::TchBackend;
use crate::data::SliceSample;
use crate::error::TrainError;
use crate::trainer::IMAGE_ENCODER_PREFIX;

/// Images encoded per forward pass when filling the cache.
const ENCODE_CHUNK: usize = 4;

/// The cache folder of `backend`'s image encoder under `root`: named by an xxh3-128 (hex) over the encoder's
/// parameters (names, shapes, f32 values).
pub fn encoder_cache_dir(root: &Path, backend: &TchBackend) -> PathBuf {
    let mut hasher = Xxh3::new();
    for (name, tensor) in backend.named_params() {
        if !name.starts_with(IMAGE_ENCODER_PREFIX) {
            continue;
        }
        hasher.update(name.as_bytes());
        for d in tensor.size() {
            hasher.update(&d.to_le_bytes());
        }
        let values = Vec::<f32>::try_from(
            tensor
                .detach()
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .flatten(0, -1),
        )
        .unwrap_or_default();
        for v in values {
            hasher.update(&v.to_le_bytes());
        }
    }
    root.join(format!("{:032x}", hasher.digest128()))
}

/// What filling the cache did.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheReport {
    /// Embeddings read from the cache.
    pub reused: usize,
    /// Embeddings computed (and stored).
    pub computed: usize,
    /// Seconds spent in the encoder.
    pub encoder_seconds: f64,
}

impl std::ops::Add for CacheReport {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            reused: self.reused + other.reused,
            computed: self.computed + other.computed,
            encoder_seconds: self.encoder_seconds + other.encoder_seconds,
        }
    }
}

/// The embedding of every sample (`[C, 64, 64]` f32 on the CPU, in order), read from the encoder's cache
/// folder `encoder_dir` ([`encoder_cache_dir`]) or computed with `sam`'s image encoder on `backend` and
/// stored there. `progress` is told the
/// number of samples done.
pub fn sample_embeddings(
    sam: &Sam,
    backend: &TchBackend,
    samples: &[SliceSample],
    encoder_dir: &Path,
    mut progress: impl FnMut(usize),
) -> Result<(Vec<Tensor>, CacheReport), TrainError> {
    let cache_of = |sample: &SliceSample| EmbeddingCache::new(encoder_dir, &sample.id.source);
    let mut embeddings: Vec<Option<Tensor>> = samples
        .iter()
        .map(|sample| match cache_of(sample).load(sample.id.slice) {
            Lookup::Hit(array) => Some(to_tensor(&array)),
            Lookup::Miss | Lookup::Corrupt { .. } => None,
        })
        .collect();
    let mut report = CacheReport {
        reused: embeddings.iter().filter(|e| e.is_some()).count(),
        ..CacheReport::default()
    };
    let missing: Vec<usize> = (0..samples.len()).filter(|&i| embeddings[i].is_none()).collect();
    let started = std::time::Instant::now();
    for chunk in missing.chunks(ENCODE_CHUNK) {
        let encoded = encode(sam, backend, chunk.iter().map(|&i| &samples[i]));
        for (k, &i) in chunk.iter().enumerate() {
            let embedding = encoded.get(k as i64);
            cache_of(&samples[i]).store(samples[i].id.slice, &to_array(&embedding))?;
            embeddings[i] = Some(embedding);
        }
        report.computed += chunk.len();
        progress(report.reused + report.computed);
    }
    report.encoder_seconds = started.elapsed().as_secs_f64();
    let embeddings = embeddings
        .into_iter()
        .map(|e| e.expect("every sample encoded"))
        .collect();
    Ok((embeddings, report))
}

/// The embeddings of a run's training and validation samples, in order.
pub struct SplitEmbeddings {
    /// Of the training samples.
    pub train: Vec<Tensor>,
    /// Of the validation samples.
    pub val: Vec<Tensor>,
}

/// [`sample_embeddings`] of a run's training and then validation samples under the cache folder `root` (one
/// folder per encoder inside it); `progress` is told the samples done and the total.
pub fn split_embeddings(
    sam: &Sam,
    backend: &TchBackend,
    (train, val): (&[SliceSample], &[SliceSample]),
    root: &Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<(SplitEmbeddings, CacheReport), TrainError> {
    let dir = encoder_cache_dir(root, backend);
    let total = train.len() + val.len();
    let (train_embeddings, a) = sample_embeddings(sam, backend, train, &dir, |done| progress(done, total))?;
    let (val_embeddings, b) = sample_embeddings(sam, backend, val, &dir, |done| progress(train.len() + done, total))?;
    let embeddings = SplitEmbeddings {
        train: train_embeddings,
        val: val_embeddings,
    };
    Ok((embeddings, a + b))
}

/// The image encoder's output for `samples`, `[n, C, 64, 64]` f32 on the CPU, without gradients.
fn encode<'a>(sam: &Sam, backend: &TchBackend, samples: impl Iterator<Item = &'a SliceSample>) -> Tensor {
    let inputs: Vec<Tensor> = samples.map(|s| Tensor::from_slice(&s.input)).collect();
    let n = inputs.len() as i64;
    let side = sam.config.img_size as i64;
    let images = Tensor::stack(&inputs, 0).reshape([n, 3, side, side]);
    tch::no_grad(|| sam.encode_image(backend, &backend.input(&images)).0)
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
}

fn to_tensor(array: &ArrayD<f32>) -> Tensor {
    let shape: Vec<i64> = array.shape().iter().map(|&d| d as i64).collect();
    let standard = array.as_standard_layout();
    Tensor::from_slice(standard.as_slice().unwrap_or_default()).reshape(&shape)
}

fn to_array(tensor: &Tensor) -> ArrayD<f32> {
    let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
    let values = Vec::<f32>::try_from(tensor.contiguous().flatten(0, -1)).unwrap_or_default();
    ArrayD::from_shape_vec(IxDyn(&shape), values).expect("values match the tensor's shape")
}
