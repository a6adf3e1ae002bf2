//! DICOM in: a single file (single- or multi-frame) or a folder holding one series, as a [`Volume`] with
//! the geometry DICOM defines (Image Position/Orientation (Patient), Pixel Spacing, per-frame functional
//! groups of enhanced objects), modality rescale applied, slices sorted along the slice normal.
//!
//! Array layout: `[column, row, slice]`, so a slice along axis 2 is the image as stored (x = column,
//! y = row). DICOM patient space is LPS; the affine is converted to RAS like NIfTI's.
//! Codecs: native (explicit/implicit VR, little/big endian, deflate), RLE, JPEG baseline/extended/lossless,
//! JPEG 2000 (pure Rust), and JPEG-LS when the `jpegls` feature (CharLS) is built.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use ndarray::Array3;
use nifti::affine::Affine4;
use nifti::{NiftiHeader, NiftiType, XForm};

use crate::dicom_guard::{check_lengths_within, LengthError};
use crate::error::{human_bytes, Cause};
use crate::input::{Declared, ReadLimits};
use crate::j2k_guard::{check_j2k_fragments, J2kLayout};
use crate::rle_guard::{check_rle_fragments, RleLayout};
use crate::volume::{GridHeader, Volume};
use crate::IoError;

/// Decoded images larger than this (values as f32) are refused before decoding.
const MAX_VOXELS: u64 = 1 << 30;
/// Relative deviation of slice steps from their mean beyond which the spacing counts as uneven.
const UNEVEN_TOLERANCE: f64 = 0.01;

/// True when `path` is a folder or a file that starts like DICOM (preamble + `DICM`) or is named `.dcm`.
pub fn looks_like_dicom(path: &Path) -> bool {
    if path.is_dir() {
        return true;
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"))
    {
        return true;
    }
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|_| &head[128..132] == b"DICM")
}

/// A transfer syntax's name and UID, for messages.
fn transfer_syntax_name(uid: &str) -> String {
    TransferSyntaxRegistry.get(uid).map_or_else(
        || format!("unknown transfer syntax {uid}"),
        |ts| format!("{} ({uid})", ts.name()),
    )
}

/// Fails with the transfer syntax's name when this build cannot decode its pixel data.
fn check_decodable(path: &Path, uid: &str) -> Result<(), IoError> {
    let Some(ts) = TransferSyntaxRegistry.get(uid) else {
        return Err(IoError::unusable(
            path,
            format!("unsupported transfer syntax: unknown UID {uid}"),
        ));
    };
    if ts.is_unsupported() || ts.is_unsupported_pixel_encapsulation() {
        let hint = if uid == "1.2.840.10008.1.2.4.80" || uid == "1.2.840.10008.1.2.4.81" {
            " (this build lacks JPEG-LS; build with the `jpegls` feature)"
        } else {
            ""
        };
        return Err(IoError::unusable(
            path,
            format!("unsupported transfer syntax: {}{hint}", transfer_syntax_name(uid)),
        ));
    }
    Ok(())
}

/// One decoded DICOM file: frames of values and the geometry of each.
struct DicomImage {
    columns: usize,
    rows: usize,
    /// Frame values, row-major `[rows, columns]`, rescale applied.
    frames: Vec<Vec<f32>>,
    /// Image Position (Patient) of each frame, when the file has one.
    positions: Vec<Option<[f64; 3]>>,
    /// Image Orientation (Patient): row direction, column direction.
    orientation: Option<[f64; 6]>,
    /// Pixel Spacing: (between rows, between columns).
    spacing: Option<[f64; 2]>,
    /// Slice thickness or spacing between slices.
    slice_spacing: Option<f64>,
    series_uid: String,
    transfer_syntax: String,
    notes: Vec<String>,
}

pub(crate) fn numbers(obj: &InMemDicomObject, tag: dicom_object::Tag) -> Option<Vec<f64>> {
    obj.get(tag)?
        .to_multi_float64()
        .ok()
        .filter(|v| v.iter().all(|x| x.is_finite()))
}

pub(crate) fn fixed<const N: usize>(values: Option<Vec<f64>>) -> Option<[f64; N]> {
    values.and_then(|v| v.try_into().ok())
}

/// The first item of sequence `tag` in `obj`.
pub(crate) fn first_item(obj: &InMemDicomObject, tag: dicom_object::Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.value().items()?.first()
}

/// Looks up a functional-group attribute: per-frame group first, then shared.
fn functional<'a>(
    per_frame: Option<&'a InMemDicomObject>,
    shared: Option<&'a InMemDicomObject>,
    macro_tag: dicom_object::Tag,
    tag: dicom_object::Tag,
) -> Option<Vec<f64>> {
    [per_frame, shared]
        .into_iter()
        .flatten()
        .find_map(|group| numbers(first_item(group, macro_tag)?, tag))
}

/// UIDs of JPEG 2000 (lossless only, and lossy).
const JPEG_2000: [&str; 2] = ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"];

/// Refuses JPEG 2000 codestreams that describe another image than the attributes ([`crate::j2k_guard`]).
fn check_j2k(path: &Path, obj: &DefaultDicomObject, size: ImageSize) -> Result<(), IoError> {
    let Some(fragments) = obj.get(tags::PIXEL_DATA).and_then(|e| e.fragments()) else {
        return Ok(());
    };
    let layout = J2kLayout {
        rows: size.rows,
        columns: size.columns,
        samples: size.samples,
    };
    check_j2k_fragments(fragments, layout)
        .map_err(|e| IoError::corrupt(path, "cannot decode the pixel data (JPEG 2000)", e))
}

/// UID of RLE Lossless.
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Refuses RLE pixel data whose fragments dicom-rs's decoder would index out of bounds
/// ([`crate::rle_guard`]).
fn check_rle(path: &Path, obj: &DefaultDicomObject, plane: u64, samples: u64) -> Result<(), IoError> {
    let bits = obj
        .get(tags::BITS_ALLOCATED)
        .and_then(|e| e.to_int::<u64>().ok())
        .unwrap_or(8);
    let fragments = obj
        .get(tags::PIXEL_DATA)
        .and_then(|e| e.fragments())
        .ok_or_else(|| IoError::unusable(path, "RLE Lossless pixel data is not encapsulated in fragments"))?;
    let layout = RleLayout {
        plane: plane as usize,
        segments: (samples * bits.div_ceil(8)) as usize,
    };
    check_rle_fragments(fragments, layout)
        .map_err(|e| IoError::corrupt(path, "cannot decode the pixel data (RLE Lossless)", e))
}

fn read_file(path: &Path, limits: &ReadLimits) -> Result<DicomImage, IoError> {
    let bytes = std::fs::read(path).map_err(|e| IoError::read(path, e))?;
    let parsed = parse_file(path, &bytes, limits)?;
    // The dataset holds its own copy of the pixel data.
    drop(bytes);
    decode_parsed(path, parsed)
}

/// A DICOM file's bytes as a volume; `path` names it in errors. No limit on its size beyond the reader's
/// sanity bounds: see [`dicom_from_bytes_within`].
pub fn dicom_from_bytes(path: &Path, bytes: &[u8]) -> Result<Volume, IoError> {
    dicom_from_bytes_within(path, bytes, &ReadLimits::UNLIMITED)
}

/// A DICOM file's bytes as a volume, refusing with [`IoError::TooLarge`] one whose attributes (rows,
/// columns, frames, samples, bits) declare more than `limits` allow, before its pixel data is decoded.
pub fn dicom_from_bytes_within(path: &Path, bytes: &[u8], limits: &ReadLimits) -> Result<Volume, IoError> {
    single_file_volume(path, decode_parsed(path, parse_file(path, bytes, limits)?)?)
}

/// The dataset parsed after the length guard.
pub(crate) fn parse_dataset(path: &Path, bytes: &[u8]) -> Result<DefaultDicomObject, IoError> {
    parse_dataset_within(path, bytes, &ReadLimits::UNLIMITED)
}

/// Metadata a deflated dataset may hold beside the voxel data `ReadLimits` allow.
const DEFLATED_METADATA: u64 = 64 << 20;

/// The dataset parsed after the length guard; a deflated dataset is not inflated beyond the voxel data
/// `limits` allow and [`DEFLATED_METADATA`] (refused with [`IoError::TooLarge`]: its attributes lie inside).
fn parse_dataset_within(path: &Path, bytes: &[u8], limits: &ReadLimits) -> Result<DefaultDicomObject, IoError> {
    let max_inflated = match *limits == ReadLimits::UNLIMITED {
        true => u64::MAX,
        false => limits.max_data_bytes().saturating_add(DEFLATED_METADATA),
    };
    check_lengths_within(bytes, max_inflated).map_err(|e| match e {
        LengthError::InflatedBeyond(limit) => IoError::TooLarge {
            path: path.into(),
            declared: format!("a deflated DICOM dataset of more than {}", human_bytes(limit)),
            voxels: None,
            max_voxels: limits.max_voxels as u64,
        },
        e => IoError::corrupt(path, "not a readable DICOM file", e),
    })?;
    OpenFileOptions::new()
        .from_reader(bytes)
        .map_err(|e| IoError::corrupt(path, "not a readable DICOM file (truncated or corrupt?)", e))
}

/// The image's size as its attributes declare it.
#[derive(Debug, Clone, Copy)]
struct ImageSize {
    rows: u64,
    columns: u64,
    frames: u64,
    samples: u64,
    bits_allocated: u64,
}

impl ImageSize {
    /// Voxels of the volume it decodes to (colour becomes gray), and the bytes its pixel data decodes to.
    fn declared(&self) -> Declared {
        let voxels = self.rows.saturating_mul(self.columns).saturating_mul(self.frames);
        let samples = if self.samples > 1 {
            format!(", {} samples a pixel", self.samples)
        } else {
            String::new()
        };
        Declared {
            voxels,
            data_bytes: voxels
                .saturating_mul(self.samples)
                .saturating_mul(self.bits_allocated.div_ceil(8).max(1)),
            layout: format!(
                "{}-bit{samples}, {}x{}x{}",
                self.bits_allocated, self.columns, self.rows, self.frames
            ),
        }
    }
}

/// Fewest voxels any image may declare, whatever its file size (a 2048 x 2048 slice).
const MIN_VOXEL_BUDGET: u64 = 1 << 22;
/// Voxels an image may declare per byte of its file: generous for real native, lossless and lossy pixel
/// data (1-bit native data holds 8 per byte; compressed streams rarely exceed 20), and a bound on what a
/// corrupted header can make the decoder allocate.
const VOXELS_PER_FILE_BYTE: u64 = 64;

/// Rows, columns, frames and samples, checked against `limits`, what this file can hold and what this build
/// can decode.
fn image_size(
    path: &Path,
    obj: &DefaultDicomObject,
    transfer_syntax: &str,
    file_len: usize,
    limits: &ReadLimits,
) -> Result<ImageSize, IoError> {
    let int = |tag| obj.get(tag).and_then(|e| e.to_int::<u64>().ok());
    let (Some(rows), Some(columns)) = (int(tags::ROWS), int(tags::COLUMNS)) else {
        return Err(IoError::unusable(
            path,
            "no image in this DICOM file (Rows/Columns missing)",
        ));
    };
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err(IoError::unusable(path, "no Pixel Data in this DICOM file"));
    }
    let bits_allocated = int(tags::BITS_ALLOCATED).unwrap_or(8);
    let size = ImageSize {
        rows,
        columns,
        frames: int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1),
        samples: int(tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1),
        bits_allocated,
    };
    limits.check(path, &size.declared())?;
    let voxels = rows
        .saturating_mul(columns)
        .saturating_mul(size.frames)
        .saturating_mul(size.samples);
    let budget = (file_len as u64)
        .saturating_mul(VOXELS_PER_FILE_BYTE)
        .clamp(MIN_VOXEL_BUDGET, MAX_VOXELS);
    if voxels > budget {
        return Err(IoError::unusable(
            path,
            format!(
                "{columns}x{rows}x{} image with {} samples is too large to load from a {file_len}-byte file",
                size.frames, size.samples
            ),
        ));
    }
    let bits_stored = int(tags::BITS_STORED).unwrap_or(bits_allocated);
    if !matches!(bits_allocated, 1 | 8 | 16 | 32 | 64) || !(1..=32.min(bits_allocated)).contains(&bits_stored) {
        return Err(IoError::unusable(
            path,
            format!(
                "Bits Allocated {bits_allocated} and Bits Stored {bits_stored} describe no pixel format medico reads"
            ),
        ));
    }
    if transfer_syntax == "1.2.840.10008.1.2.4.51" && bits_stored > 8 {
        return Err(IoError::unusable(
            path,
            format!(
                "unsupported transfer syntax: {} with {bits_stored}-bit samples (the pure-Rust JPEG decoder reads 8-bit lossy JPEG only)",
                transfer_syntax_name(transfer_syntax)
            ),
        ));
    }
    if transfer_syntax == RLE_LOSSLESS {
        check_rle(path, obj, rows * columns, size.samples)?;
    }
    if JPEG_2000.contains(&transfer_syntax) {
        check_j2k(path, obj, size)?;
    }
    Ok(size)
}

/// Every frame as f32 values (rescale applied, colour to luma), and notes on what was converted.
fn decode_frames(
    path: &Path,
    obj: &DefaultDicomObject,
    size: ImageSize,
    transfer_syntax: &str,
) -> Result<(Vec<Vec<f32>>, Vec<String>), IoError> {
    let decode_error = |why: Cause| {
        IoError::corrupt(
            path,
            format!(
                "cannot decode the pixel data ({})",
                transfer_syntax_name(transfer_syntax)
            ),
            why,
        )
    };
    // A decoder that still panics on a corrupt stream (dicom-rs's are third-party code) is contained: the
    // file is refused like any other undecodable one.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| obj.decode_pixel_data()))
        .map_err(|_| decode_error("the decoder failed on a corrupt stream".into()))?
        .map_err(|e| decode_error(e.into()))?;
    let n_frames = decoded.number_of_frames() as usize;
    let samples = decoded.samples_per_pixel() as usize;
    let plane = size.rows as usize * size.columns as usize;
    let frames = if decoded.bits_allocated() == 1 {
        expanded_bits(decoded.data(), n_frames, plane)
    } else {
        let mut frames = Vec::with_capacity(n_frames);
        for f in 0..n_frames {
            // The conversion (rescale, LUTs) asserts on attributes it finds impossible: contained too.
            let values: Vec<f32> =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoded.to_vec_frame(f as u32)))
                    .map_err(|_| IoError::unusable(path, format!("the converter failed on frame {f}")))?
                    .map_err(|e| IoError::corrupt(path, format!("cannot convert frame {f}"), e))?;
            frames.push(if samples == 3 { luma(&values) } else { values });
        }
        frames
    };
    if let Some((f, frame)) = frames.iter().enumerate().find(|(_, v)| v.len() != plane) {
        return Err(IoError::unusable(
            path,
            format!("frame {f} decodes to {} values, expected {plane}", frame.len()),
        ));
    }
    let notes = if samples == 3 {
        vec!["color image converted to gray (BT.601 luma)".to_string()]
    } else {
        Vec::new()
    };
    Ok((frames, notes))
}

/// Where each frame lies: positions, orientation, spacing (top level, else the functional groups of
/// enhanced objects).
pub(crate) struct FrameGeometry {
    pub(crate) positions: Vec<Option<[f64; 3]>>,
    pub(crate) orientation: Option<[f64; 6]>,
    pub(crate) spacing: Option<[f64; 2]>,
    pub(crate) slice_spacing: Option<f64>,
}

pub(crate) fn frame_geometry(obj: &DefaultDicomObject, n_frames: usize) -> FrameGeometry {
    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame: Vec<&InMemDicomObject> = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.value().items())
        .map(|items| items.iter().collect())
        .unwrap_or_default();
    let group = |f: usize| per_frame.get(f).copied();
    let top_position = fixed::<3>(numbers(obj, tags::IMAGE_POSITION_PATIENT));
    let positions = (0..n_frames)
        .map(|f| {
            fixed::<3>(functional(
                group(f),
                shared,
                tags::PLANE_POSITION_SEQUENCE,
                tags::IMAGE_POSITION_PATIENT,
            ))
            .or(if n_frames == 1 { top_position } else { None })
        })
        .collect();
    // Top-level attribute, else the first frame's functional group (enhanced objects).
    let top_or_group = |macro_tag, tag| numbers(obj, tag).or_else(|| functional(group(0), shared, macro_tag, tag));
    let orientation = fixed::<6>(top_or_group(
        tags::PLANE_ORIENTATION_SEQUENCE,
        tags::IMAGE_ORIENTATION_PATIENT,
    ));
    let spacing = fixed::<2>(top_or_group(tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING));
    let scalar = |tag| numbers(obj, tag).and_then(|v| v.first().copied()).filter(|v| *v > 0.0);
    let slice_spacing = scalar(tags::SPACING_BETWEEN_SLICES)
        .or_else(|| scalar(tags::SLICE_THICKNESS))
        .or_else(|| {
            functional(group(0), shared, tags::PIXEL_MEASURES_SEQUENCE, tags::SLICE_THICKNESS)
                .and_then(|v| v.first().copied())
                .filter(|v| *v > 0.0)
        });
    FrameGeometry {
        positions,
        orientation,
        spacing,
        slice_spacing,
    }
}

/// A DICOM file parsed, its image size checked, its pixel data not yet decoded.
struct ParsedFile {
    obj: DefaultDicomObject,
    transfer_syntax: String,
    size: ImageSize,
}

/// One DICOM file's bytes parsed and checked (decodable, within `limits` and the file's voxel budget).
fn parse_file(path: &Path, bytes: &[u8], limits: &ReadLimits) -> Result<ParsedFile, IoError> {
    let obj = parse_dataset_within(path, bytes, limits)?;
    let transfer_syntax = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']).to_string();
    check_decodable(path, &transfer_syntax)?;
    let size = image_size(path, &obj, &transfer_syntax, bytes.len(), limits)?;
    Ok(ParsedFile {
        obj,
        transfer_syntax,
        size,
    })
}

/// A parsed DICOM file decoded: frames, geometry, series.
fn decode_parsed(path: &Path, parsed: ParsedFile) -> Result<DicomImage, IoError> {
    let ParsedFile {
        obj,
        transfer_syntax,
        size,
    } = parsed;
    let (frames, notes) = decode_frames(path, &obj, size, &transfer_syntax)?;
    let geometry = frame_geometry(&obj, frames.len());
    let series_uid = obj
        .get(tags::SERIES_INSTANCE_UID)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default();
    Ok(DicomImage {
        columns: size.columns as usize,
        rows: size.rows as usize,
        frames,
        positions: geometry.positions,
        orientation: geometry.orientation,
        spacing: geometry.spacing,
        slice_spacing: geometry.slice_spacing,
        series_uid,
        transfer_syntax,
        notes,
    })
}

/// Interleaved RGB to gray: ITU-R BT.601 luma.
fn luma(rgb: &[f32]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
        .collect()
}

/// 1-bit pixel data (segmentations), which the decoder expands to one byte of 0 or 255 per sample,
/// as 0/1 values per frame.
fn expanded_bits(bytes: &[u8], frames: usize, plane: usize) -> Vec<Vec<f32>> {
    bytes
        .chunks(plane)
        .take(frames)
        .map(|frame| frame.iter().map(|&b| f32::from(u8::from(b != 0))).collect())
        .collect()
}

pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Reads a DICOM file or a folder holding one series. No limit on its size beyond the reader's sanity
/// bounds: see [`read_dicom_within`] for files from untrusted sources.
pub fn read_dicom(path: &Path) -> Result<Volume, IoError> {
    read_dicom_within(path, &ReadLimits::UNLIMITED)
}

/// Reads a DICOM file or a folder holding one series as [`read_dicom`] does, refusing with
/// [`IoError::TooLarge`] one whose attributes declare more than `limits` allow before any pixel data is
/// decoded: rows x columns x frames of a file; for a series, that of each file times the number of files
/// (the size of the first file's times their number, before the first is decoded).
pub fn read_dicom_within(path: &Path, limits: &ReadLimits) -> Result<Volume, IoError> {
    if path.is_dir() {
        read_series(path, limits)
    } else {
        single_file_volume(path, read_file(path, limits)?)
    }
}

fn single_file_volume(path: &Path, image: DicomImage) -> Result<Volume, IoError> {
    let format = format!(
        "DICOM file, {} frame(s), {}",
        image.frames.len(),
        transfer_syntax_name(&image.transfer_syntax)
    );
    assemble(path, vec![image], format)
}

/// The files of a series folder, in name order: hidden files and DICOMDIR skipped.
pub(crate) fn series_files(dir: &Path) -> Result<Vec<PathBuf>, IoError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| IoError::read(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            !name.starts_with('.') && !name.eq_ignore_ascii_case("DICOMDIR")
        })
        .collect();
    files.sort();
    Ok(files)
}

fn read_series(dir: &Path, limits: &ReadLimits) -> Result<Volume, IoError> {
    let files = series_files(dir)?;
    if files.is_empty() {
        return Err(IoError::unusable(dir, "the folder holds no files"));
    }
    let mut images = Vec::with_capacity(files.len());
    // Voxels and bytes of the files decoded so far.
    let (mut voxels, mut data_bytes) = (0u64, 0u64);
    for (index, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).map_err(|e| IoError::read(file, e))?;
        let parsed = parse_file(file, &bytes, limits)?;
        drop(bytes);
        // The series as this file's size times the files left, before any of them is decoded.
        let this = parsed.size.declared();
        let left = (files.len() - index) as u64;
        let series = Declared {
            voxels: voxels.saturating_add(this.voxels.saturating_mul(left)),
            data_bytes: data_bytes.saturating_add(this.data_bytes.saturating_mul(left)),
            layout: format!("{} files of {}", files.len(), this.layout),
        };
        limits.check(dir, &series)?;
        voxels = voxels.saturating_add(this.voxels);
        data_bytes = data_bytes.saturating_add(this.data_bytes);
        images.push(decode_parsed(file, parsed)?);
    }
    let mut series: Vec<&str> = images.iter().map(|i| i.series_uid.as_str()).collect();
    series.sort_unstable();
    series.dedup();
    if series.len() > 1 {
        return Err(IoError::unusable(
            dir,
            format!(
                "the folder holds {} series ({}); give a folder with one series",
                series.len(),
                series.join(", ")
            ),
        ));
    }
    if let Some((file, image)) = files.iter().zip(&images).find(|(_, i)| i.frames.len() != 1) {
        return Err(IoError::unusable(
            file,
            format!(
                "multi-frame file ({} frames) inside a series folder; open it on its own",
                image.frames.len()
            ),
        ));
    }
    let first = &images[0];
    for (file, image) in files.iter().zip(&images) {
        if (image.rows, image.columns) != (first.rows, first.columns) {
            return Err(IoError::unusable(
                file,
                format!(
                    "{}x{} image in a series of {}x{} images",
                    image.columns, image.rows, first.columns, first.rows
                ),
            ));
        }
        let same_orientation = match (image.orientation, first.orientation) {
            (Some(a), Some(b)) => a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4),
            (None, None) => true,
            _ => false,
        };
        if !same_orientation || image.positions[0].is_none() {
            return Err(IoError::unusable(
                file,
                "slices of this series differ in orientation or lack Image Position (Patient)",
            ));
        }
    }
    let format = format!(
        "DICOM series of {} files, {}",
        images.len(),
        transfer_syntax_name(&first.transfer_syntax)
    );
    assemble(dir, images, format)
}

/// Stacks the frames of `images` (one multi-frame file, or single-frame files of one series) into a
/// volume sorted along the slice normal, with the affine their geometry defines.
/// A frame's position (when the file gives one) and its values.
type PositionedFrame = (Option<[f64; 3]>, Vec<f32>);

fn assemble(path: &Path, images: Vec<DicomImage>, format: String) -> Result<Volume, IoError> {
    let first = &images[0];
    let (columns, rows, declared_spacing) = (first.columns, first.rows, first.slice_spacing);
    let mut notes: Vec<String> = first.notes.clone();
    let orientation = first.orientation.unwrap_or_else(|| {
        notes.push("no Image Orientation (Patient): axial orientation assumed".into());
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    });
    let row_dir = [orientation[0], orientation[1], orientation[2]];
    let col_dir = [orientation[3], orientation[4], orientation[5]];
    let normal = cross(row_dir, col_dir);
    let [row_spacing, col_spacing] = first.spacing.unwrap_or_else(|| {
        notes.push("no Pixel Spacing: 1 mm pixels assumed".into());
        [1.0, 1.0]
    });
    let mut slices: Vec<PositionedFrame> = images
        .into_iter()
        .flat_map(|image| image.positions.into_iter().zip(image.frames))
        .collect();
    let all_positioned = slices.iter().all(|(p, _)| p.is_some());
    if all_positioned {
        slices.sort_by(|a, b| {
            let along = |p: &Option<[f64; 3]>| p.map_or(0.0, |p| dot(p, normal));
            along(&a.0).total_cmp(&along(&b.0))
        });
    }
    let origin = slices[0].0.unwrap_or_else(|| {
        notes.push("no Image Position (Patient): origin at 0,0,0 assumed".into());
        [0.0; 3]
    });
    let step = if all_positioned && slices.len() > 1 {
        positioned_step(path, &slices, normal, &mut notes)?
    } else {
        let thickness = first_slice_spacing(&mut notes, slices.len(), declared_spacing);
        normal.map(|n| n * thickness)
    };
    let data = stack_frames(slices, columns, rows);
    let affine = ras_affine([
        row_dir.map(|v| v * col_spacing),
        col_dir.map(|v| v * row_spacing),
        step,
        origin,
    ]);
    check_affine(path, &affine)?;
    // The `nifti` crate fits a quaternion to the affine and panics where that fails numerically (a corrupt
    // but finite geometry): contained like the decoders.
    let header = std::panic::catch_unwind(|| nifti_header_for(&data, &affine, &format)).map_err(|_| {
        IoError::unusable(
            path,
            "the image geometry gives no NIfTI orientation (corrupt orientation or spacing?)",
        )
    })?;
    Ok(Volume {
        data,
        affine,
        grid: GridHeader::Nifti1(Box::new(header)),
        format,
        notes,
    })
}

/// The mean step between sorted, positioned slices; two slices at one position are refused, uneven
/// spacing is noted.
fn positioned_step(
    path: &Path,
    slices: &[PositionedFrame],
    normal: [f64; 3],
    notes: &mut Vec<String>,
) -> Result<[f64; 3], IoError> {
    let along: Vec<f64> = slices.iter().map(|(p, _)| dot(p.unwrap_or_default(), normal)).collect();
    let gaps: Vec<f64> = along.windows(2).map(|w| w[1] - w[0]).collect();
    if let Some(i) = gaps.iter().position(|g| g.abs() < 1e-6) {
        return Err(IoError::unusable(
            path,
            format!(
                "two slices share the position {:.3} mm along the normal (slices {i} and {})",
                along[i],
                i + 1
            ),
        ));
    }
    let (first, last) = (
        slices[0].0.unwrap_or_default(),
        slices[slices.len() - 1].0.unwrap_or_default(),
    );
    let step: [f64; 3] = std::array::from_fn(|r| (last[r] - first[r]) / (slices.len() - 1) as f64);
    let mean = dot(step, normal);
    let (lo, hi) = gaps
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &g| (lo.min(g), hi.max(g)));
    if (hi - lo) > UNEVEN_TOLERANCE * mean.abs() {
        notes.push(format!(
            "uneven slice spacing ({lo:.3}–{hi:.3} mm); the affine uses the mean {mean:.3} mm"
        ));
    }
    Ok(step)
}

/// Frames (row-major `[rows, columns]`) stacked as `[column, row, slice]`, each frame freed once copied.
fn stack_frames(slices: Vec<PositionedFrame>, columns: usize, rows: usize) -> Array3<f32> {
    let mut data = Array3::<f32>::zeros((columns, rows, slices.len()));
    for (k, (_, values)) in slices.into_iter().enumerate() {
        for r in 0..rows {
            for c in 0..columns {
                data[[c, r, k]] = values[r * columns + c];
            }
        }
    }
    data
}

/// The affine must map voxels to points: every entry finite in the f32 a NIfTI header stores, and the
/// 3x3 part invertible (orientation vectors not parallel, spacings not zero).
pub(crate) fn check_affine(path: &Path, affine: &[[f64; 4]; 4]) -> Result<(), IoError> {
    let finite = affine.iter().flatten().all(|&v| (v as f32).is_finite());
    let m = |r: usize, c: usize| affine[r][c];
    let det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1)) - m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0))
        + m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
    if finite && det.is_finite() && det.abs() > 1e-12 {
        Ok(())
    } else {
        Err(IoError::unusable(
            path,
            "the image geometry (orientation, pixel spacing, slice positions) describes no usable voxel grid",
        ))
    }
}

/// The RAS voxel-to-world affine of LPS columns (column step, row step, slice step, origin): x and y
/// flipped.
fn ras_affine(lps: [[f64; 3]; 4]) -> [[f64; 4]; 4] {
    let mut affine = [[0.0; 4]; 4];
    for r in 0..3 {
        let sign = if r < 2 { -1.0 } else { 1.0 };
        for c in 0..4 {
            // `+ 0.0` turns the -0.0 of negated zeros into 0.0.
            affine[r][c] = sign * lps[c][r] + 0.0;
        }
    }
    affine[3][3] = 1.0;
    affine
}

fn first_slice_spacing(notes: &mut Vec<String>, depth: usize, declared: Option<f64>) -> f64 {
    match declared {
        Some(s) => s,
        None => {
            if depth > 1 {
                notes.push("no slice positions or thickness: 1 mm slice spacing assumed".into());
            }
            1.0
        }
    }
}

/// A NIfTI-1 header for masks of a DICOM volume: sform and qform (code scanner) from the affine.
pub(crate) fn nifti_header_for(data: &Array3<f32>, affine: &[[f64; 4]; 4], description: &str) -> NiftiHeader {
    let (ni, nj, nk) = data.dim();
    let mut header = NiftiHeader {
        dim: [3, ni as u16, nj as u16, nk as u16, 1, 1, 1, 1],
        datatype: NiftiType::Uint8 as i16,
        bitpix: 8,
        xyzt_units: 2, // millimetres
        ..NiftiHeader::default()
    };
    let m = Affine4::from_fn(|r, c| affine[r][c] as f32);
    header.set_sform(&m, XForm::ScannerAnat);
    header.set_qform(&m, XForm::ScannerAnat);
    let text: String = format!("medico mask; {description}").chars().take(79).collect();
    let _ = header.set_description_str(text);
    header
}
