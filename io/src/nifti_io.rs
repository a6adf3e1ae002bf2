//! NIfTI files (`.nii`, `.nii.gz`; NIfTI-1 through the `nifti` crate, NIfTI-2 through [`crate::nifti2`])
//! in, and mask NIfTI files out on the input's exact grid and header, written atomically.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use ndarray::{Array3, ArrayD, Axis, IxDyn, ShapeBuilder};
use nifti::{InMemNiftiObject, IntoNdArray, NiftiHeader, NiftiObject};

use crate::atomic_output::{persist, temp_beside};
use crate::nifti1_guard::{check_nifti1, declared_len, MAX_DATA_BYTES};
use crate::nifti2::{is_nifti2, write_maybe_gzip, Nifti2Header, HEADER_SIZE as HEADER_PEEK};
use crate::volume::{fortran_order, GridHeader, Volume};
use crate::IoError;

/// True for `.nii` and `.nii.gz` paths.
pub fn is_nifti(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

fn is_gzip_name(path: &Path) -> bool {
    path.to_string_lossy().to_lowercase().ends_with(".gz")
}

/// The geometry fields of a NIfTI header (either version), in double precision.
struct Geometry {
    qform_code: i32,
    sform_code: i32,
    /// `pixdim[0..4]`: qfac, then voxel sizes.
    pixdim: [f64; 4],
    /// `quatern_b, c, d, qoffset_x, y, z`.
    quatern: [f64; 6],
    srow: [[f64; 4]; 3],
}

impl Geometry {
    fn of_nifti1(h: &NiftiHeader) -> Self {
        Self {
            qform_code: h.qform_code as i32,
            sform_code: h.sform_code as i32,
            pixdim: std::array::from_fn(|i| h.pixdim[i] as f64),
            quatern: [
                h.quatern_b,
                h.quatern_c,
                h.quatern_d,
                h.quatern_x,
                h.quatern_y,
                h.quatern_z,
            ]
            .map(f64::from),
            srow: [h.srow_x, h.srow_y, h.srow_z].map(|r| r.map(f64::from)),
        }
    }

    fn of_nifti2(h: &Nifti2Header) -> Self {
        let (qform_code, sform_code) = h.codes();
        Self {
            qform_code,
            sform_code,
            pixdim: std::array::from_fn(|i| h.pixdim(i)),
            quatern: h.quatern(),
            srow: h.srow(),
        }
    }

    /// Voxel-to-world affine: the sform when its code is set, else the qform, else voxel sizes
    /// (the NIfTI standard's method 1), as nibabel's `get_best_affine`.
    fn affine(&self) -> [[f64; 4]; 4] {
        if self.sform_code > 0 {
            let [x, y, z] = self.srow;
            return [x, y, z, [0.0, 0.0, 0.0, 1.0]];
        }
        let [_, dx, dy, dz] = self.pixdim;
        if self.qform_code <= 0 {
            return [
                [dx, 0.0, 0.0, 0.0],
                [0.0, dy, 0.0, 0.0],
                [0.0, 0.0, dz, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ];
        }
        let [b, c, d, ox, oy, oz] = self.quatern;
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let qfac = if self.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - b * b - c * c,
            ],
        ];
        let scale = [dx, dy, dz * qfac];
        let offset = [ox, oy, oz];
        let mut m = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = r[i][j] * scale[j];
            }
            m[i][3] = offset[i];
        }
        m[3][3] = 1.0;
        m
    }
}

/// Voxel-to-world affine of a NIfTI-1 header (sform, else qform, else voxel sizes).
pub fn header_affine(h: &NiftiHeader) -> [[f64; 4]; 4] {
    Geometry::of_nifti1(h).affine()
}

/// Picks the 3D volume out of a 3D or 4D array (`volume`: index along the 4th axis); for a 4D file also
/// a note saying which volume was taken.
fn select_volume(
    path: &Path,
    array: ArrayD<f32>,
    volume: Option<usize>,
) -> Result<(Array3<f32>, Option<String>), IoError> {
    let shape = array.shape().to_vec();
    // Trailing singleton axes (a 4D file with one time point) do not count.
    let mut rank = shape.len();
    while rank > 3 && shape[rank - 1] == 1 {
        rank -= 1;
    }
    // Row-major reshape keeps the logical [i, j, k] indices; only trailing singleton axes go.
    let three = |a: ArrayD<f32>| {
        let mut s = a.shape().to_vec();
        s.resize(3, 1);
        a.as_standard_layout()
            .into_owned()
            .into_shape_with_order((s[0], s[1], s[2]))
            .map_err(|e| IoError::corrupt(path, "the voxel array cannot be reshaped", e))
    };
    match (rank, volume) {
        (r, None) | (r, Some(0)) if r <= 3 => Ok((three(array)?, None)),
        (r, Some(t)) if r <= 3 => Err(IoError::unusable(path, format!("--volume {t}: the image is {r}D"))),
        (4, None) => Err(IoError::unusable(
            path,
            format!("4D volume with {} volumes: choose one with --volume T", shape[3]),
        )),
        (4, Some(t)) => {
            if t >= shape[3] {
                return Err(IoError::unusable(
                    path,
                    format!("--volume {t}: the file has {} volumes", shape[3]),
                ));
            }
            let note = format!("volume {t} of the {} volumes of a 4D file", shape[3]);
            Ok((three(array.index_axis(Axis(3), t).to_owned())?, Some(note)))
        }
        (r, _) => Err(IoError::unusable(
            path,
            format!("{r}-dimensional images are not supported (need 3D, or 4D with --volume)"),
        )),
    }
}

/// Reads a NIfTI-1 or NIfTI-2 volume; a 4D file needs `volume` (the index along the 4th axis).
pub fn read_nifti(path: &Path, volume: Option<usize>) -> Result<Volume, IoError> {
    let raw = std::fs::read(path).map_err(|e| IoError::read(path, e))?;
    nifti_from_bytes(path, &raw, volume)
}

/// A NIfTI volume from the bytes of a `.nii` or `.nii.gz` file; `path` names it in errors.
pub fn nifti_from_bytes(path: &Path, raw: &[u8], volume: Option<usize>) -> Result<Volume, IoError> {
    let bytes = decompressed(path, raw)?;
    if is_nifti2(&bytes) {
        return read_nifti2(path, &bytes, volume);
    }
    check_nifti1(&bytes).map_err(|e| IoError::corrupt(path, "not a readable NIfTI file", e))?;
    let bytes = without_padding_before_data(&bytes);
    let object = std::panic::catch_unwind(|| InMemNiftiObject::from_reader(std::io::Cursor::new(&bytes[..])))
        .map_err(|_| IoError::unusable(path, "the NIfTI reader crashed on this file (corrupt header?)"))?
        .map_err(|e| IoError::corrupt(path, "not a readable NIfTI file (truncated or corrupt?)", e))?;
    let header = object.header().clone();
    // The crate panics on data it finds inconsistent; such a panic is contained like a read error.
    let array = std::panic::catch_unwind(|| object.into_volume().into_ndarray::<f32>())
        .map_err(|_| IoError::unusable(path, "the NIfTI reader crashed on the voxel data (corrupt header?)"))?
        .map_err(|e| IoError::corrupt(path, "cannot read the voxel data", e))?;
    let (data, note) = select_volume(path, array, volume)?;
    Ok(Volume {
        data,
        affine: header_affine(&header),
        grid: GridHeader::Nifti1(Box::new(header)),
        format: "NIfTI-1".into(),
        notes: note.into_iter().collect(),
    })
}

/// Size of a NIfTI-1 header plus its extension flag: where the data or the first extension starts.
const NIFTI1_PREAMBLE: usize = 352;

/// A single-file NIfTI-1 whose data starts after padding (no extensions, `vox_offset` past byte 352), as
/// the bytes the `nifti` crate reads correctly: the crate reads the data right after the extension flag
/// when there is no extension, ignoring `vox_offset`, which shifted every voxel of such files (e.g.
/// INIA19's label volume, `vox_offset` 32976). The padding is dropped and `vox_offset` set to 352; any other
/// file is returned as it is.
fn without_padding_before_data(bytes: &[u8]) -> Cow<'_, [u8]> {
    if bytes.len() < NIFTI1_PREAMBLE || bytes[348] != 0 {
        return bytes.into();
    }
    let little = bytes[..4] == 348i32.to_le_bytes();
    let raw: [u8; 4] = bytes[108..112].try_into().expect("4 bytes");
    let vox_offset = if little {
        f32::from_le_bytes(raw)
    } else {
        f32::from_be_bytes(raw)
    };
    let offset = vox_offset as usize;
    if !(vox_offset.is_finite() && offset > NIFTI1_PREAMBLE && offset <= bytes.len()) {
        return bytes.into();
    }
    let mut fixed = Vec::with_capacity(bytes.len() - (offset - NIFTI1_PREAMBLE));
    fixed.extend_from_slice(&bytes[..NIFTI1_PREAMBLE]);
    fixed.extend_from_slice(&bytes[offset..]);
    let new_offset = NIFTI1_PREAMBLE as f32;
    fixed[108..112].copy_from_slice(&if little {
        new_offset.to_le_bytes()
    } else {
        new_offset.to_be_bytes()
    });
    fixed.into()
}

/// The file's bytes, gunzipped if they are gzip; inflation stops where the header says the data ends,
/// so a small corrupt or hostile stream cannot expand without bound.
fn decompressed<'a>(path: &Path, raw: &'a [u8]) -> Result<Cow<'a, [u8]>, IoError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(Cow::Borrowed(raw));
    }
    let gzip_error = |e| IoError::corrupt(path, "not a readable gzip stream (truncated or corrupt?)", e);
    let mut decoder = flate2::read::MultiGzDecoder::new(raw);
    let mut out = Vec::new();
    (&mut decoder)
        .take(HEADER_PEEK as u64)
        .read_to_end(&mut out)
        .map_err(gzip_error)?;
    let declared = if is_nifti2(&out) {
        Nifti2Header::parse(&out).ok().and_then(|h| h.declared_len())
    } else {
        declared_len(&out)
    };
    let limit = declared.unwrap_or(0).min(MAX_DATA_BYTES + HEADER_PEEK as u64);
    (&mut decoder)
        .take(limit.saturating_sub(out.len() as u64))
        .read_to_end(&mut out)
        .map_err(gzip_error)?;
    Ok(Cow::Owned(out))
}

fn read_nifti2(path: &Path, bytes: &[u8], volume: Option<usize>) -> Result<Volume, IoError> {
    let header = Nifti2Header::parse(bytes).map_err(|e| IoError::corrupt(path, "not a readable NIfTI-2 file", e))?;
    let rank = header.dim(0) as usize;
    let shape: Vec<usize> = (1..=rank).map(|d| header.dim(d) as usize).collect();
    let voxels = header
        .read_voxels(bytes)
        .map_err(|e| IoError::corrupt(path, "not a readable NIfTI-2 file", e))?;
    let array = ArrayD::from_shape_vec(IxDyn(&shape).f(), voxels)
        .map_err(|e| IoError::corrupt(path, "the voxel array does not fit the dimensions", e))?;
    let (data, note) = select_volume(path, array, volume)?;
    Ok(Volume {
        data,
        affine: Geometry::of_nifti2(&header).affine(),
        grid: GridHeader::Nifti2(Box::new(header)),
        format: "NIfTI-2".into(),
        notes: note.into_iter().collect(),
    })
}

/// Writes a `u8` mask `[i, j, k]` as NIfTI on `volume`'s grid and header, atomically: a temporary file
/// in the destination folder, then a rename. NIfTI-2 inputs get a NIfTI-2 mask; `.gz` compresses.
pub fn write_mask_nifti(path: &Path, volume: &Volume, mask: &Array3<u8>) -> Result<(), IoError> {
    let gzip = is_gzip_name(path);
    let mut temp = temp_beside(path, if gzip { ".nii.gz" } else { ".nii" })?;
    match &volume.grid {
        GridHeader::Nifti1(header) => nifti::writer::WriterOptions::new(temp.path())
            .reference_header(header)
            .write_nifti(mask)
            .map_err(|e| IoError::write(path, e))?,
        GridHeader::Nifti2(header) => {
            write_maybe_gzip(temp.as_file_mut(), &header.mask_file(&fortran_order(mask)), gzip)
                .map_err(|e| IoError::write(path, e))?
        }
    }
    persist(temp, path)
}
