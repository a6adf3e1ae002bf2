//! Training samples from three sources: NIfTI volumes with label volumes, sliced along an array axis; folders
//! of 2D images with label maps of the same file name (PNG/TIFF, instance or semantic: one object per non-zero
//! value); and the SA-Med2D-20M layout (a JSON index from each image to its binary object masks). Every image
//! gets the intensity mapping the model's bundles use (volumes and high-bit-depth images: per-image 1st–99th
//! percentile to 0–255 for SAM, LiteMedSAM's non-zero 0.5–99.5 percentile for a LiteMedSAM-style model;
//! 8-bit images as they are), the model's resize and normalization (SamPredictor's Pillow bilinear and
//! mean/std, or LiteMedSAM's area resize and min-max) and padding, and its objects with enough pixels (label
//! maps resized with nearest neighbour onto the same grid). Images are decoded and prepared in parallel (rayon). Samples are grouped into
//! [`Batch`]es with at most a given number of objects per image, chosen by a seeded generator.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use medico_bundle::manifest::default_intensity;
use medico_io::embedding_cache::cache_key;
use medico_io::image2d::read_image;
use medico_io::input::{open_scan, Scan};
use medico_io::intensity::Intensity;
use medico_io::label_source::read_labels_for;
use medico_io::preprocess::{encoder_input, mask_logits};
use medico_io::volume::Volume;
use medico_io::IoError;
use medico_models::clicks::lite_medsam_box_around;
use medico_models::objects::components;
use medico_models::prompt::{resized_size, BoxPrompt, CoordinateMap};
use medico_models::{Preprocessing, SamConfig};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::Tensor;

use crate::objective::{Batch, BatchInput, BatchTotals};

/// A volume and its labels.
#[derive(Debug, Clone)]
pub struct VolumeSource {
    /// The image volume.
    pub image: PathBuf,
    /// The label volume on the same grid (0 = background).
    pub labels: PathBuf,
    /// The slicing axis.
    pub axis: usize,
    /// Label values to train on (`None`: every non-zero value).
    pub values: Option<Vec<i64>>,
    /// Label values never to train on (a held-out label set).
    pub exclude: Vec<i64>,
    /// Use every `slice_step`-th slice (1: all; neighbouring slices are near duplicates).
    pub slice_step: usize,
    /// Label values merged into one object class each (instead of one class per value), e.g. a hemisphere or
    /// the whole brain made of an atlas's parcels.
    pub groups: Option<Vec<LabelGroup>>,
    /// What an object is: a class's whole mask on the slice, or each of its connected pieces.
    pub objects: ObjectRule,
    /// Also derive propagation objects from this volume ([`DerivedObject`]; per label value or group).
    pub propagation: bool,
    /// Give those objects the neighbour's mask as a mask prompt too ([`DerivedObject::prompt_mask`]; only
    /// what a run with `propagation_mask_prompt` reads).
    pub mask_prompts: bool,
}

/// What one training object of a label class is on a slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectRule {
    /// The class's whole mask on the slice, however many pieces it has.
    #[default]
    Labels,
    /// Each 8-connected piece of the class's mask (at least the minimum object size), as the interactive
    /// evaluation defines its objects: one prompt segments one piece.
    Components,
}

/// A set of label values that together form one object class, written as values and inclusive ranges
/// separated by commas (`"1-999"`, `"3,7,10-12"`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct LabelGroup {
    ranges: Vec<(i64, i64)>,
}

impl LabelGroup {
    /// Whether `value` belongs to the group.
    pub fn contains(&self, value: i64) -> bool {
        self.ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&value))
    }
}

impl TryFrom<String> for LabelGroup {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let number = |part: &str| {
            part.trim()
                .parse::<i64>()
                .map_err(|_| format!("label group '{text}': '{part}' is not a label value"))
        };
        let ranges = text
            .split(',')
            .map(|part| match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (number(lo)?, number(hi)?);
                    if lo > hi {
                        return Err(format!("label group '{text}': range {lo}-{hi} is empty"));
                    }
                    Ok((lo, hi))
                }
                None => number(part).map(|v| (v, v)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { ranges })
    }
}

/// Where a sample came from, for the embedding cache: the key of its source (image data, slicing axis,
/// intensity mapping and preprocessing, like the runtime's embedding cache keys a volume) and its slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleId {
    /// Key of the source image or volume with its axis and preprocessing (xxh3-128 hex).
    pub source: String,
    /// Slice index in the source (0 for a 2D image).
    pub slice: usize,
}

/// One slice ready for the model.
pub struct SliceSample {
    /// Where it came from.
    pub id: SampleId,
    /// Preprocessed image `[3, S, S]`, row-major.
    pub input: Vec<f32>,
    /// Object masks `S x S` (row-major), one per label value present.
    pub objects: Vec<Vec<bool>>,
    /// Propagation objects: prompts derived from a neighbouring slice's masks, with this slice's masks.
    pub derived: Vec<DerivedObject>,
}

/// What propagation through a volume asks of the model on one slice: the box upstream LiteMedSAM's 3D rule
/// (the runtime's `lite_medsam` projection) derives from a neighbouring slice's mask of an object, in the
/// model's input frame, and this slice's mask of the same object — empty on the first slices past the
/// object's end, where the model must return nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedObject {
    /// The box derived from the neighbour's mask (inclusive corners, model input pixels).
    pub prompt: BoxPrompt,
    /// This slice's mask of the object, `S x S` row-major (all false past the object's end).
    pub target: Vec<bool>,
    /// The neighbour's mask as the mask prompt the runtime derives from it (`mask_logits` at the model's
    /// low-res size, row-major): +1 inside, -1 outside, 0 in the padding, in units of `MASK_LOGIT`. Empty
    /// unless the source asks for mask prompts.
    pub prompt_mask: Vec<i8>,
}

/// Propagation objects kept per slice, at most, half of them past an object's end when there are such.
pub const DERIVED_PER_SLICE: usize = 8;

/// What a slice holds for training.
struct SliceObjects {
    objects: Vec<Vec<bool>>,
    derived: Vec<DerivedObject>,
}

/// Nearest-neighbour resize of a label image (`[h, w]` row-major) to `(rh, rw)`, padded to `side x side` with 0.
fn resize_labels(labels: &[f32], (h, w): (usize, usize), (rh, rw): (usize, usize), side: usize) -> Vec<f32> {
    let mut out = vec![0.0; side * side];
    for y in 0..rh {
        let sy = ((y as f64 + 0.5) * h as f64 / rh as f64).floor().min((h - 1) as f64) as usize;
        for x in 0..rw {
            let sx = ((x as f64 + 0.5) * w as f64 / rw as f64).floor().min((w - 1) as f64) as usize;
            out[y * side + x] = labels[sy * w + sx];
        }
    }
    out
}

fn error(path: &Path, problem: impl std::fmt::Display) -> IoError {
    IoError::unusable(path, problem)
}

/// A volume of any format medico reads (NIfTI, NRRD, DICOM).
fn read_volume(path: &Path) -> Result<Volume, IoError> {
    match open_scan(path, None)? {
        Scan::Volume(volume) => Ok(*volume),
        Scan::Image(_) => Err(error(path, "a 2D image where a volume was expected")),
    }
}

/// An image volume and its label volume, refused unless they share a grid and the slicing is possible.
fn read_volume_pair(image: &Path, labels: &Path, axis: usize, slice_step: usize) -> Result<(Volume, Volume), IoError> {
    let (image_path, label_path) = (image, labels);
    let image = read_volume(image_path)?;
    let labels = read_labels_for(label_path, &image, image_path)?;
    if axis > 2 {
        return Err(error(image_path, format!("axis {axis} (expected 0, 1 or 2)")));
    }
    if slice_step == 0 {
        return Err(error(image_path, "slice_step 0 (expected 1 or more)"));
    }
    Ok((image, labels))
}

/// Every slice of `source` that holds at least one object of `min_pixels` pixels (at model resolution).
pub fn slice_samples(
    source: &VolumeSource,
    config: &SamConfig,
    min_pixels: usize,
) -> Result<Vec<SliceSample>, IoError> {
    let wanted = |v: i64| source.values.as_ref().is_none_or(|list| list.contains(&v)) && !source.exclude.contains(&v);
    let slicing = (source.axis, source.slice_step);
    volume_samples(&source.image, &source.labels, slicing, config, |volume, index| {
        let (labels, hw) = volume.slice(source.axis, index);
        let resized = resize_labels(&labels, hw, resized_size(hw.0, hw.1, config.img_size), config.img_size);
        let classes = match &source.groups {
            Some(groups) => group_masks(&resized, groups, &source.exclude),
            None => value_masks(&resized, wanted),
        };
        let side = (config.img_size, config.img_size);
        let objects: Vec<Vec<bool>> = match source.objects {
            ObjectRule::Labels => large_enough(classes, min_pixels),
            ObjectRule::Components => classes.iter().flat_map(|m| components(m, side, min_pixels)).collect(),
        };
        let derived = if source.propagation {
            let object_of = |v: i64| object_of_value(v, source.groups.as_deref(), &wanted, &source.exclude);
            let sizes = (config.img_size, source.mask_prompts.then(|| config.low_res_size()));
            derived_objects(volume, (source.axis, index), &object_of, sizes, min_pixels)
        } else {
            Vec::new()
        };
        (!objects.is_empty() || !derived.is_empty()).then_some(SliceObjects { objects, derived })
    })
}

/// The object a label value belongs to for propagation (0: none): the value itself when it is wanted, or,
/// with `groups`, one more than the index of the first group holding it (a value in two groups propagates
/// with the first only) unless it is excluded.
fn object_of_value(value: i64, groups: Option<&[LabelGroup]>, wanted: &impl Fn(i64) -> bool, exclude: &[i64]) -> i64 {
    if value == 0 || exclude.contains(&value) {
        return 0;
    }
    match groups {
        Some(groups) => groups
            .iter()
            .position(|g| g.contains(value))
            .map_or(0, |k| k as i64 + 1),
        None if wanted(value) => value,
        None => 0,
    }
}

/// A label slice with each value replaced by its object ([`object_of_value`]).
fn relabelled(values: Vec<f32>, object_of: &impl Fn(i64) -> i64) -> Vec<f32> {
    values.into_iter().map(|v| object_of(v as i64) as f32).collect()
}

/// The propagation objects of slice `index` along `axis` of a label volume: for each object (`object_of`
/// maps a label value to its object, 0 for none) with at least `min_pixels` pixels (at model resolution)
/// on a neighbouring slice, the `lite_medsam` box of the neighbour's mask (computed at the slice's own
/// resolution, as the runtime does, then mapped to the model's input frame) and this slice's mask of the
/// object (empty past its end), with the neighbour's mask as a `low x low` mask prompt when `low` is given. At most
/// [`DERIVED_PER_SLICE`], half of them past an end when there are such, chosen by a generator seeded with
/// the slice index.
fn derived_objects(
    labels: &Volume,
    (axis, index): (usize, usize),
    object_of: &impl Fn(i64) -> i64,
    (side, low): (usize, Option<usize>),
    min_pixels: usize,
) -> Vec<DerivedObject> {
    let (here, hw) = labels.slice(axis, index);
    let here = relabelled(here, object_of);
    let resized_hw = resized_size(hw.0, hw.1, side);
    let map = CoordinateMap::new(hw, side);
    let here_resized = resize_labels(&here, hw, resized_hw, side);
    let here_values: HashSet<i64> = here_resized.iter().map(|&l| l as i64).collect();
    // Candidates (value, box, neighbour) first; only the chosen ones get their masks built.
    let (mut inside, mut past_end) = (Vec::new(), Vec::new());
    let neighbours: Vec<Vec<f32>> = [
        index.checked_sub(1),
        Some(index + 1).filter(|&n| n < labels.slices(axis)),
    ]
    .into_iter()
    .flatten()
    .map(|n| relabelled(labels.slice(axis, n).0, object_of))
    .collect();
    for (slot, values) in neighbours.iter().enumerate() {
        let pixels = value_counts(&resize_labels(values, hw, resized_hw, side));
        let boxes = value_boxes(values, hw.1);
        let mut present: Vec<i64> = values.iter().filter(|&&v| v != 0.0).map(|&v| v as i64).collect();
        present.sort_unstable();
        present.dedup();
        for value in present {
            if pixels.get(&value).copied().unwrap_or(0) < min_pixels {
                continue;
            }
            let [x0, y0, x1, y1] = lite_medsam_box_around(boxes[&value], hw);
            let (bx0, by0) = map.apply(x0 as f64, y0 as f64);
            let (bx1, by1) = map.apply(x1 as f64, y1 as f64);
            let prompt = BoxPrompt {
                x0: f64::from(bx0),
                y0: f64::from(by0),
                x1: f64::from(bx1),
                y1: f64::from(by1),
            };
            if here_values.contains(&value) {
                inside.push((value, prompt, slot));
            } else {
                past_end.push((value, prompt, slot));
            }
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(index as u64);
    inside.shuffle(&mut rng);
    past_end.shuffle(&mut rng);
    let ends = past_end.len().min(DERIVED_PER_SLICE / 2);
    let chosen = past_end
        .into_iter()
        .take(ends)
        .chain(inside.into_iter().take(DERIVED_PER_SLICE - ends));
    chosen
        .map(|(value, prompt, slot)| {
            let prompt_mask = low.map_or_else(Vec::new, |low| {
                let neighbour_mask: Vec<bool> = neighbours[slot].iter().map(|&l| l as i64 == value).collect();
                mask_logits(&neighbour_mask, hw, low)
                    .iter()
                    .map(|&logit| i8::from(logit > 0.0) - i8::from(logit < 0.0))
                    .collect()
            });
            DerivedObject {
                prompt,
                target: here_resized.iter().map(|&l| l as i64 == value).collect(),
                prompt_mask,
            }
        })
        .collect()
}

/// Pixels per label value (as an integer) of a label image.
fn value_counts(labels: &[f32]) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for &l in labels {
        *counts.entry(l as i64).or_insert(0) += 1;
    }
    counts
}

/// The tight box `[x0, y0, x1, y1)` of every label value (as an integer) of a `[h, w]` label image, in one
/// pass.
fn value_boxes(labels: &[f32], w: usize) -> HashMap<i64, [usize; 4]> {
    let mut boxes: HashMap<i64, [usize; 4]> = HashMap::new();
    for (i, &l) in labels.iter().enumerate() {
        let (x, y) = (i % w, i / w);
        let b = boxes.entry(l as i64).or_insert([x, y, x + 1, y + 1]);
        *b = [b[0].min(x), b[1].min(y), b[2].max(x + 1), b[3].max(y + 1)];
    }
    boxes
}

/// The samples of every `slice_step`-th slice along `axis` of an image volume and its label volume for
/// which `objects_of` (given the label volume and the slice index) finds objects: the slice with the
/// training intensity mapping and the model's preprocessing, keyed for the embedding cache. Slices are
/// prepared in parallel.
fn volume_samples(
    image: &Path,
    labels: &Path,
    (axis, slice_step): (usize, usize),
    config: &SamConfig,
    objects_of: impl Fn(&Volume, usize) -> Option<SliceObjects> + Sync,
) -> Result<Vec<SliceSample>, IoError> {
    let (image, labels) = read_volume_pair(image, labels, axis, slice_step)?;
    let intensity = training_intensity(config);
    let standard = image.data.as_standard_layout();
    let key = source_key(
        standard.as_slice().unwrap_or_default(),
        image.data.shape(),
        axis,
        config,
    );
    let samples = (0..image.slices(axis))
        .into_par_iter()
        .filter(|index| index % slice_step == 0)
        .filter_map(|index| {
            let found = objects_of(&labels, index)?;
            let (values, hw) = image.slice(axis, index);
            let rgb = intensity.apply_rgb(&values);
            let id = SampleId {
                source: key.clone(),
                slice: index,
            };
            let mut sample = sample(id, &rgb, hw, found.objects, config);
            sample.derived = found.derived;
            Some(sample)
        })
        .collect();
    Ok(samples)
}

/// A volume for semantic segmentation: its slices along `axis` with the class of every pixel, class `k` being
/// the label values `classes[k - 1]` (0 = background: every other value).
#[derive(Debug, Clone)]
pub struct SemanticVolumeSource {
    /// The image volume.
    pub image: PathBuf,
    /// The label volume on the same grid.
    pub labels: PathBuf,
    /// The slicing axis.
    pub axis: usize,
    /// Label values of each class after background, in class order.
    pub classes: Vec<Vec<i64>>,
    /// Use every `slice_step`-th slice.
    pub slice_step: usize,
}

/// Every slice of `source` where some class has at least `min_pixels` pixels (at model resolution), as samples
/// whose `objects[k]` is the mask of class `k + 1` (empty masks kept, so the index is the class).
pub fn semantic_slice_samples(
    source: &SemanticVolumeSource,
    config: &SamConfig,
    min_pixels: usize,
) -> Result<Vec<SliceSample>, IoError> {
    let side = config.img_size;
    let slicing = (source.axis, source.slice_step);
    volume_samples(&source.image, &source.labels, slicing, config, |volume, index| {
        let (labels, hw) = volume.slice(source.axis, index);
        let resized = resize_labels(&labels, hw, resized_size(hw.0, hw.1, side), side);
        let objects: Vec<Vec<bool>> = source
            .classes
            .iter()
            .map(|values| resized.iter().map(|&l| values.contains(&(l as i64))).collect())
            .collect();
        let enough = |m: &Vec<bool>| m.iter().filter(|&&b| b).count() >= min_pixels;
        objects.iter().any(enough).then_some(SliceObjects {
            objects,
            derived: Vec::new(),
        })
    })
}

/// The class map `[S, S]` of a semantic sample (see [`semantic_slice_samples`]): `k + 1` where `objects[k]`
/// holds (the last class wins where classes overlap), 0 elsewhere.
pub fn class_map(sample: &SliceSample) -> Vec<i64> {
    let pixels = sample.objects.first().map_or(0, Vec::len);
    let mut map = vec![0i64; pixels];
    for (k, mask) in sample.objects.iter().enumerate() {
        for (m, &inside) in map.iter_mut().zip(mask) {
            if inside {
                *m = k as i64 + 1;
            }
        }
    }
    map
}

/// One mask per label value present in a (resized) label image for which `wanted` holds (0 = background).
fn value_masks(resized: &[f32], wanted: impl Fn(i64) -> bool) -> Vec<Vec<bool>> {
    let mut present: Vec<i64> = resized.iter().filter(|&&v| v != 0.0).map(|&v| v as i64).collect();
    present.sort_unstable();
    present.dedup();
    present
        .into_iter()
        .filter(|&v| wanted(v))
        .map(|v| resized.iter().map(|&l| l as i64 == v).collect())
        .collect()
}

/// The objects of a label image (`[h, w]`, 0 = background) at model resolution: one mask per value with at
/// least `min_pixels` pixels after the nearest-neighbour resize and padding.
fn label_objects(labels: &[f32], hw: (usize, usize), side: usize, min_pixels: usize) -> Vec<Vec<bool>> {
    let resized = resize_labels(labels, hw, resized_size(hw.0, hw.1, side), side);
    large_enough(value_masks(&resized, |_| true), min_pixels)
}

/// The masks with at least `min_pixels` pixels.
fn large_enough(masks: Vec<Vec<bool>>, min_pixels: usize) -> Vec<Vec<bool>> {
    masks
        .into_iter()
        .filter(|m| m.iter().filter(|&&b| b).count() >= min_pixels)
        .collect()
}

/// One mask per group of a (resized) label image: the pixels whose value is in the group and not excluded.
fn group_masks(resized: &[f32], groups: &[LabelGroup], exclude: &[i64]) -> Vec<Vec<bool>> {
    groups
        .iter()
        .map(|group| {
            resized
                .iter()
                .map(|&l| {
                    let v = l as i64;
                    v != 0 && group.contains(v) && !exclude.contains(&v)
                })
                .collect()
        })
        .collect()
}

/// The intensity mapping the model's bundles use for scans (`model.json`'s default for its preprocessing:
/// LiteMedSAM's non-zero 0.5–99.5 percentile window for a LiteMedSAM-style model, else the 1–99
/// percentile), so that training sees slices as inference will.
pub fn training_intensity(config: &SamConfig) -> Intensity {
    default_intensity(&Preprocessing::for_architecture(config))
        .parse()
        .expect("the bundle defaults are valid intensity spellings")
}

/// The cache key of a source's samples: its values, shape and slicing axis with the intensity mapping and the
/// preprocessing that turn them into encoder inputs.
fn source_key(values: &[f32], shape: &[usize], axis: usize, config: &SamConfig) -> String {
    let preprocessing = format!(
        "train:{}:{:?}:{}",
        training_intensity(config),
        Preprocessing::for_architecture(config),
        config.img_size
    );
    cache_key(values, shape, axis, &preprocessing, "")
}

/// The cache key of a 2D RGB image's sample.
fn image_key(rgb: &[u8], hw: (usize, usize), config: &SamConfig) -> SampleId {
    let values: Vec<f32> = rgb.iter().map(|&v| f32::from(v)).collect();
    SampleId {
        source: source_key(&values, &[hw.0, hw.1, 3], 0, config),
        slice: 0,
    }
}

/// A prepared sample: the model's resize / normalise / pad of an RGB image, with its objects.
fn sample(id: SampleId, rgb: &[u8], hw: (usize, usize), objects: Vec<Vec<bool>>, config: &SamConfig) -> SliceSample {
    let (input, _) = encoder_input(
        rgb,
        hw,
        config.img_size,
        &Preprocessing::for_architecture(config),
        (config.pixel_mean, config.pixel_std),
    );
    SliceSample {
        id,
        input: input.iter().copied().collect(),
        objects,
        derived: Vec::new(),
    }
}

/// An image file as the RGB inference would see (8-bit images as they are, others mapped as the model's
/// bundles map scans).
fn read_rgb(path: &Path, config: &SamConfig) -> Result<(Vec<u8>, (usize, usize)), IoError> {
    let image = read_image(path)?;
    let rgb = image
        .to_rgb(None, training_intensity(config))
        .map_err(|e| error(path, e))?;
    Ok((rgb.pixels, rgb.hw))
}

/// A label or mask image as values (grey level; 16-bit PNG/TIFF keep their values).
fn read_labels(path: &Path) -> Result<(Vec<f32>, (usize, usize)), IoError> {
    let image = read_image(path)?;
    Ok((image.gray(), image.hw))
}

/// Image files (PNG/TIFF) directly in `dir`, sorted by name.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, IoError> {
    let entries = std::fs::read_dir(dir).map_err(|e| IoError::read(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "tif" | "tiff"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A folder of 2D images and a folder of label maps with the same file names.
#[derive(Debug, Clone)]
pub struct ImageFolderSource {
    /// The images (PNG/TIFF; grey or RGB).
    pub images: PathBuf,
    /// Label maps named like the images: 0 = background, every other value one object.
    pub labels: PathBuf,
}

/// Every image of `source` with at least one object of `min_pixels` pixels (at model resolution). An image
/// without a label map of the same name, or one of another size, is refused with its path.
pub fn folder_samples(
    source: &ImageFolderSource,
    config: &SamConfig,
    min_pixels: usize,
) -> Result<Vec<SliceSample>, IoError> {
    let images = image_files(&source.images)?;
    if images.is_empty() {
        return Err(error(&source.images, "no PNG or TIFF images"));
    }
    let samples: Vec<Option<SliceSample>> = images
        .par_iter()
        .map(|image_path| {
            let name = image_path.file_name().unwrap_or_default();
            let labels_path = source.labels.join(name);
            if !labels_path.exists() {
                return Err(error(image_path, format!("no label map {}", labels_path.display())));
            }
            let (rgb, hw) = read_rgb(image_path, config)?;
            let (labels, label_hw) = read_labels(&labels_path)?;
            if label_hw != hw {
                return Err(error(
                    &labels_path,
                    format!("size {label_hw:?} differs from the image's {hw:?}"),
                ));
            }
            let objects = label_objects(&labels, hw, config.img_size, min_pixels);
            Ok((!objects.is_empty()).then(|| sample(image_key(&rgb, hw, config), &rgb, hw, objects, config)))
        })
        .collect::<Result<_, IoError>>()?;
    Ok(samples.into_iter().flatten().collect())
}

/// The SA-Med2D-20M layout: a JSON index mapping each image to its binary object masks, all paths relative
/// to the index's folder (`{"images/x.png": ["masks/x_000.png", ...], ...}`).
#[derive(Debug, Clone)]
pub struct SaMed2dSource {
    /// The JSON index (e.g. `SAMed2D_v1.json` or a split of it).
    pub index: PathBuf,
}

/// Every image of the index with at least one mask of `min_pixels` pixels (at model resolution).
pub fn sa_med2d_samples(
    source: &SaMed2dSource,
    config: &SamConfig,
    min_pixels: usize,
) -> Result<Vec<SliceSample>, IoError> {
    let text = std::fs::read_to_string(&source.index).map_err(|e| IoError::read(&source.index, e))?;
    let index: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_str(&text).map_err(|e| IoError::corrupt(&source.index, "not an image → masks index", e))?;
    if index.is_empty() {
        return Err(error(&source.index, "the index lists no images"));
    }
    let root = source.index.parent().unwrap_or(Path::new(".")).to_path_buf();
    let entries: Vec<(&String, &Vec<String>)> = index.iter().collect();
    let samples: Vec<Option<SliceSample>> = entries
        .par_iter()
        .map(|(image, masks)| {
            let image_path = root.join(image);
            let (rgb, hw) = read_rgb(&image_path, config)?;
            let mut objects = Vec::new();
            for mask in masks.iter() {
                let mask_path = root.join(mask);
                let (values, mask_hw) = read_labels(&mask_path)?;
                if mask_hw != hw {
                    return Err(error(
                        &mask_path,
                        format!("size {mask_hw:?} differs from the image's {hw:?}"),
                    ));
                }
                let binary: Vec<f32> = values.iter().map(|&v| f32::from(v > 0.0)).collect();
                objects.extend(label_objects(&binary, hw, config.img_size, min_pixels));
            }
            Ok((!objects.is_empty()).then(|| sample(image_key(&rgb, hw, config), &rgb, hw, objects, config)))
        })
        .collect::<Result<_, IoError>>()?;
    Ok(samples.into_iter().flatten().collect())
}

/// Items picked for a batch, each with the index of its image in the batch.
type Picked<T> = Vec<(usize, T)>;

/// What a batch picks from its images: objects, their click seeds, propagation objects.
struct Picks {
    objects: Picked<Vec<bool>>,
    seeds: Vec<u64>,
    derived: Picked<DerivedObject>,
}

/// At most `max_objects` objects and as many propagation objects of each sample, chosen at random by a
/// generator seeded with the sample's key, which also seeds each chosen object's clicks: an image picks the
/// same objects and clicks whichever rank's shard it falls in.
fn pick_objects(samples: &[&SliceSample], keys: &[u64], max_objects: usize) -> Picks {
    let mut picks = Picks {
        objects: Vec::new(),
        seeds: Vec::new(),
        derived: Vec::new(),
    };
    for (i, (sample, &key)) in samples.iter().zip(keys).enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(key);
        let mut order: Vec<usize> = (0..sample.objects.len()).collect();
        order.shuffle(&mut rng);
        for &k in order.iter().take(max_objects) {
            picks.objects.push((i, sample.objects[k].clone()));
            picks.seeds.push(rng.random());
        }
        let mut order: Vec<usize> = (0..sample.derived.len()).collect();
        order.shuffle(&mut rng);
        picks
            .derived
            .extend(order.iter().take(max_objects).map(|&k| (i, sample.derived[k].clone())));
    }
    picks
}

/// How many objects and propagation objects a batch of `samples` holds with at most `max_objects` of each
/// per image: computed without building the batch, so every rank knows the global batch's counts.
pub fn batch_totals(samples: &[&SliceSample], max_objects: usize) -> BatchTotals {
    BatchTotals {
        objects: samples.iter().map(|s| s.objects.len().min(max_objects)).sum(),
        derived: samples.iter().map(|s| s.derived.len().min(max_objects)).sum(),
    }
}

/// The batch of `input` and the objects picked from `samples` (one key each).
fn batch_from(input: BatchInput, samples: &[&SliceSample], keys: &[u64], max_objects: usize) -> Batch {
    assert_eq!(samples.len(), keys.len(), "one key per sample");
    let picks = pick_objects(samples, keys, max_objects);
    Batch {
        input,
        objects: picks.objects,
        derived: picks.derived,
        object_seeds: picks.seeds,
        totals: batch_totals(samples, max_objects),
    }
}

/// A batch of `samples` with at most `max_objects` objects (and as many propagation objects) per image,
/// chosen at random by each sample's key (see [`batch_totals`] for a shard's totals).
pub fn make_batch(samples: &[&SliceSample], keys: &[u64], side: usize, max_objects: usize) -> Batch {
    let mut pixels = Vec::with_capacity(samples.len() * 3 * side * side);
    for sample in samples {
        pixels.extend_from_slice(&sample.input);
    }
    let images = Tensor::from_slice(&pixels).reshape([samples.len() as i64, 3, side as i64, side as i64]);
    batch_from(BatchInput::Images(images), samples, keys, max_objects)
}

/// Like [`make_batch`], with the samples' precomputed embeddings (`[C, 64, 64]` each, in the order of
/// `samples`) instead of their images: the same objects for the same keys.
pub fn make_embedding_batch(
    samples: &[&SliceSample],
    embeddings: &[&Tensor],
    keys: &[u64],
    max_objects: usize,
) -> Batch {
    batch_from(
        BatchInput::Embeddings(Tensor::stack(embeddings, 0)),
        samples,
        keys,
        max_objects,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resize_by_nearest_neighbour_and_pad_with_background() {
        // 2x4 labels to 1x2 (longest side 2), padded to 2x2.
        let labels = [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0];
        assert_eq!(resize_labels(&labels, (2, 4), (1, 2), 2), vec![1.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn label_groups_parse_values_and_ranges_and_refuse_nonsense() {
        let group = LabelGroup::try_from("3, 7,10-12".to_string()).unwrap();
        let members: Vec<i64> = (0..15).filter(|&v| group.contains(v)).collect();
        assert_eq!(members, vec![3, 7, 10, 11, 12]);
        let bad = LabelGroup::try_from("1-x".to_string()).unwrap_err();
        assert!(bad.contains("'x' is not a label value"), "{bad}");
        let empty = LabelGroup::try_from("9-2".to_string()).unwrap_err();
        assert!(empty.contains("range 9-2 is empty"), "{empty}");
    }

    #[test]
    fn groups_merge_values_and_leave_out_excluded_ones() {
        let labels = [0.0, 1.0, 2.0, 1001.0, 5.0, 0.0];
        let groups = [
            LabelGroup::try_from("1-999".to_string()).unwrap(),
            LabelGroup::try_from("1-1999".to_string()).unwrap(),
        ];
        let masks = group_masks(&labels, &groups, &[5]);
        assert_eq!(masks[0], vec![false, true, true, false, false, false]);
        assert_eq!(masks[1], vec![false, true, true, true, false, false]);
    }
}
