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

/// Another engine that computes the frozen encoder's embeddings (`[C, E, E]`) from preprocessed encoder
/// inputs (`[3, S, S]`) with the same weights: ONNX Runtime on the model's exported encoder is about twice
/// as fast as libtorch on a CPU. The command line passes it (the training crate links no inference engine);
/// its first embedding is checked against libtorch's before any is stored.
pub trait ImageEncoder {
    /// The embedding of one preprocessed input.
    fn encode(&mut self, input: &[f32]) -> Result<ArrayD<f32>, String>;
    /// The engine's name, for messages.
    fn name(&self) -> String;
}

/// Largest absolute difference allowed between another engine's embedding and libtorch's (float32 engines
/// agree to ~1e-4 on these encoders).
pub const ENCODER_TOLERANCE: f32 = 1e-3;

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

/// Which samples a process computes when several fill one cache: rank `rank` of `of` takes samples
/// `rank, rank + of, ...` ([`fill_share`]); the others come from the other processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// This process's place.
    pub rank: usize,
    /// How many processes.
    pub of: usize,
}

/// The embedding of every sample (`[C, 64, 64]` f32 on the CPU, in order), read from the encoder's cache
/// folder `encoder_dir` ([`encoder_cache_dir`]) or computed and stored there: with `external` when given
/// (its first embedding checked against `sam`'s image encoder on `backend`), else with that encoder.
/// `progress` is told the number of samples done.
pub fn sample_embeddings(
    sam: &Sam,
    backend: &TchBackend,
    samples: &[SliceSample],
    encoder_dir: &Path,
    external: Option<&mut (dyn ImageEncoder + '_)>,
    mut progress: impl FnMut(usize),
) -> Result<(Vec<Tensor>, CacheReport), TrainError> {
    let mut embeddings: Vec<Option<Tensor>> = samples.iter().map(|s| cached(encoder_dir, s)).collect();
    let reused = embeddings.iter().filter(|e| e.is_some()).count();
    let missing: Vec<usize> = (0..samples.len()).filter(|&i| embeddings[i].is_none()).collect();
    let started = std::time::Instant::now();
    let computed = compute_into_cache(
        (sam, backend, external),
        samples,
        &missing,
        encoder_dir,
        |i, embedding, done| {
            embeddings[i] = Some(embedding);
            progress(reused + done);
        },
    )?;
    let report = CacheReport {
        reused,
        computed,
        encoder_seconds: started.elapsed().as_secs_f64(),
    };
    let embeddings = embeddings
        .into_iter()
        .map(|e| e.expect("every sample encoded"))
        .collect();
    Ok((embeddings, report))
}

/// Computes and stores the embeddings of `share`'s samples that the cache lacks (the rest is left to the
/// other processes); how many it computed.
pub fn fill_share(
    sam: &Sam,
    backend: &TchBackend,
    samples: &[SliceSample],
    (encoder_dir, share): (&Path, Share),
    external: Option<&mut (dyn ImageEncoder + '_)>,
) -> Result<usize, TrainError> {
    let mine: Vec<usize> = (share.rank..samples.len())
        .step_by(share.of.max(1))
        .filter(|&i| cached(encoder_dir, &samples[i]).is_none())
        .collect();
    compute_into_cache((sam, backend, external), samples, &mine, encoder_dir, |_, _, _| {})
}

/// A sample's embedding from the cache, when it holds a sound one.
fn cached(encoder_dir: &Path, sample: &SliceSample) -> Option<Tensor> {
    match EmbeddingCache::new(encoder_dir, &sample.id.source).load(sample.id.slice) {
        Lookup::Hit(array) => Some(to_tensor(&array)),
        Lookup::Miss | Lookup::Corrupt { .. } => None,
    }
}

/// Computes the embeddings of `samples[indices]` (with the external engine when given, its first embedding
/// checked against libtorch's), stores each in the cache and hands it to `done(index, embedding, computed so
/// far)`; how many it computed.
fn compute_into_cache(
    (sam, backend, external): (&Sam, &TchBackend, Option<&mut (dyn ImageEncoder + '_)>),
    samples: &[SliceSample],
    indices: &[usize],
    encoder_dir: &Path,
    mut done: impl FnMut(usize, Tensor, usize),
) -> Result<usize, TrainError> {
    let cache_of = |sample: &SliceSample| EmbeddingCache::new(encoder_dir, &sample.id.source);
    let mut computed = 0;
    match external {
        Some(engine) => {
            for &i in indices {
                let array = engine
                    .encode(&samples[i].input)
                    .map_err(|problem| TrainError::Encoder {
                        engine: engine.name(),
                        problem,
                    })?;
                if computed == 0 {
                    check_against_libtorch(sam, backend, &samples[i], &array, &engine.name())?;
                }
                cache_of(&samples[i]).store(samples[i].id.slice, &array)?;
                computed += 1;
                done(i, to_tensor(&array), computed);
            }
        }
        None => {
            for chunk in indices.chunks(ENCODE_CHUNK) {
                let encoded = encode(sam, backend, chunk.iter().map(|&i| &samples[i]));
                for (k, &i) in chunk.iter().enumerate() {
                    let embedding = encoded.get(k as i64);
                    cache_of(&samples[i]).store(samples[i].id.slice, &to_array(&embedding))?;
                    computed += 1;
                    done(i, embedding, computed);
                }
            }
        }
    }
    Ok(computed)
}

/// Refuses another engine's embedding of `sample` unless it matches libtorch's within [`ENCODER_TOLERANCE`]
/// (another model's encoder, or a broken engine, would poison the cache).
fn check_against_libtorch(
    sam: &Sam,
    backend: &TchBackend,
    sample: &SliceSample,
    array: &ArrayD<f32>,
    engine: &str,
) -> Result<(), TrainError> {
    let reference = to_array(&encode(sam, backend, std::iter::once(sample)).get(0));
    if reference.shape() != array.shape() {
        return Err(TrainError::Encoder {
            engine: engine.into(),
            problem: format!(
                "embedding of shape {:?}, libtorch's is {:?}",
                array.shape(),
                reference.shape()
            ),
        });
    }
    let largest = reference
        .iter()
        .zip(array.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if largest.is_nan() || largest > ENCODER_TOLERANCE {
        return Err(TrainError::Encoder {
            engine: engine.into(),
            problem: format!(
                "its embedding differs from the trainer's frozen encoder by {largest:.2e} (allowed {ENCODER_TOLERANCE:.0e}): not the same weights"
            ),
        });
    }
    Ok(())
}

/// The embeddings of a run's training and validation samples, in order.
pub struct SplitEmbeddings {
    /// Of the training samples.
    pub train: Vec<Tensor>,
    /// Of the validation samples.
    pub val: Vec<Tensor>,
}

/// [`sample_embeddings`] of a run's training and then validation samples under the cache folder `root` (one
/// folder per encoder inside it), with `external` when given; `progress` is told the samples done and the
/// total.
pub fn split_embeddings(
    sam: &Sam,
    backend: &TchBackend,
    (train, val): (&[SliceSample], &[SliceSample]),
    root: &Path,
    mut external: Option<&mut (dyn ImageEncoder + '_)>,
    mut progress: impl FnMut(usize, usize),
) -> Result<(SplitEmbeddings, CacheReport), TrainError> {
    let dir = encoder_cache_dir(root, backend);
    let total = train.len() + val.len();
    let (train_embeddings, a) = sample_embeddings(sam, backend, train, &dir, external.as_deref_mut(), |done| {
        progress(done, total)
    })?;
    let (val_embeddings, b) = sample_embeddings(sam, backend, val, &dir, external, |done| {
        progress(train.len() + done, total)
    })?;
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
