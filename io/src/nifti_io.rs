//! NIfTI files (`.nii`, `.nii.gz`; NIfTI-1 headers through the `nifti` crate, NIfTI-2 headers through
//! [`crate::nifti2`]) in, the voxels decoded straight into the f32 volume (only the chosen volume of a 4D
//! file), within the caller's [`ReadLimits`]; and mask NIfTI files out on the input's exact grid and header,
//! written atomically.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use ndarray::Array3;
use nifti::NiftiHeader;

use crate::atomic_output::{persist, temp_beside};
use crate::error::human_bytes;
use crate::input::{dims_text, read_after_head, Declared, ReadLimits};
use crate::nifti1_guard::{check_nifti1, datatype_bytes, datatype_name, declared_data, declared_len, MAX_DATA_BYTES};
use crate::nifti2::{is_nifti2, write_maybe_gzip, Nifti2Header, HEADER_SIZE as HEADER_PEEK};
use crate::volume::{fortran_order, from_fortran_order, GridHeader, Volume};
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

/// Which 3D volume of the file's voxel data is read: its shape, its index along the 4th axis, and for a 4D
/// file a note saying which volume was taken.
struct Chosen {
    shape: [usize; 3],
    index: usize,
    note: Option<String>,
}

/// Picks the 3D volume of a 3D or 4D image of `dims` (`volume`: index along the 4th axis).
fn choose_volume(path: &Path, dims: &[usize], volume: Option<usize>) -> Result<Chosen, IoError> {
    // Trailing singleton axes (a 4D file with one time point) do not count.
    let mut rank = dims.len();
    while rank > 3 && dims[rank - 1] == 1 {
        rank -= 1;
    }
    let mut shape = [1; 3];
    for (axis, &size) in dims.iter().take(3).enumerate() {
        shape[axis] = size;
    }
    match (rank, volume) {
        (r, None) | (r, Some(0)) if r <= 3 => Ok(Chosen {
            shape,
            index: 0,
            note: None,
        }),
        (r, Some(t)) if r <= 3 => Err(IoError::unusable(path, format!("--volume {t}: the image is {r}D"))),
        (4, None) => Err(IoError::unusable(
            path,
            format!("4D volume with {} volumes: choose one with --volume T", dims[3]),
        )),
        (4, Some(t)) => {
            if t >= dims[3] {
                return Err(IoError::unusable(
                    path,
                    format!("--volume {t}: the file has {} volumes", dims[3]),
                ));
            }
            Ok(Chosen {
                shape,
                index: t,
                note: Some(format!("volume {t} of the {} volumes of a 4D file", dims[3])),
            })
        }
        (r, _) => Err(IoError::unusable(
            path,
            format!("{r}-dimensional images are not supported (need 3D, or 4D with --volume)"),
        )),
    }
}

/// The bytes of the chosen volume in voxel data starting at `start`, `size` bytes a sample.
fn chosen_data<'a>(bytes: &'a [u8], start: usize, chosen: &Chosen, size: usize) -> &'a [u8] {
    let len = chosen.shape.iter().product::<usize>() * size;
    &bytes[start + chosen.index * len..][..len]
}

/// Reads a NIfTI-1 or NIfTI-2 volume; a 4D file needs `volume` (the index along the 4th axis). No limit on
/// its size beyond the reader's sanity bounds: see [`read_nifti_within`] for files from untrusted sources.
pub fn read_nifti(path: &Path, volume: Option<usize>) -> Result<Volume, IoError> {
    read_nifti_within(path, volume, &ReadLimits::UNLIMITED)
}

/// Reads a NIfTI-1 or NIfTI-2 volume as [`read_nifti`] does, refusing with [`IoError::TooLarge`] a file whose
/// header declares more than `limits` allow: a plain file before its data is read, a gzip one before its data
/// is inflated.
pub fn read_nifti_within(path: &Path, volume: Option<usize>, limits: &ReadLimits) -> Result<Volume, IoError> {
    let raw = read_after_head(path, HEADER_PEEK, |head| {
        if head.starts_with(&GZIP_MAGIC) {
            Ok(())
        } else {
            check_limits(path, head, limits)
        }
    })?;
    nifti_from_bytes_within(path, &raw, volume, limits)
}

/// A NIfTI volume from the bytes of a `.nii` or `.nii.gz` file; `path` names it in errors. No limit on its
/// size: see [`nifti_from_bytes_within`].
pub fn nifti_from_bytes(path: &Path, raw: &[u8], volume: Option<usize>) -> Result<Volume, IoError> {
    nifti_from_bytes_within(path, raw, volume, &ReadLimits::UNLIMITED)
}

/// A NIfTI volume from the bytes of a `.nii` or `.nii.gz` file, refusing with [`IoError::TooLarge`] one whose
/// header declares more than `limits` allow (a gzip stream is not inflated past its header then).
pub fn nifti_from_bytes_within(
    path: &Path,
    raw: &[u8],
    volume: Option<usize>,
    limits: &ReadLimits,
) -> Result<Volume, IoError> {
    let bytes = decompressed(path, raw, limits)?;
    if is_nifti2(&bytes) {
        return read_nifti2(path, &bytes, volume);
    }
    read_nifti1(path, &bytes, volume)
}

/// Refuses a file whose header (at the start of `head`, NIfTI-1 or NIfTI-2) declares more than `limits`
/// allow: all voxels of the file (every volume of a 4D one), and its voxel data with the extensions and
/// padding before it (read or inflated as well). A header that cannot be parsed passes: the reader refuses
/// it with the reason.
fn check_limits(path: &Path, head: &[u8], limits: &ReadLimits) -> Result<(), IoError> {
    let (dims, datatype, data_start, preamble) = if is_nifti2(head) {
        let Ok(header) = Nifti2Header::parse(head) else {
            return Ok(());
        };
        let dims: Vec<u64> = (1..=header.dim(0) as usize).map(|d| header.dim(d) as u64).collect();
        let start = u64::try_from(header.vox_offset()).unwrap_or(0);
        (dims, header.datatype(), start, HEADER_PEEK as u64 + 4)
    } else {
        let Some(declared) = declared_data(head) else {
            return Ok(());
        };
        (
            declared.dims,
            declared.datatype,
            declared.data_start,
            NIFTI1_PREAMBLE as u64,
        )
    };
    let voxels = dims.iter().fold(1u64, |n, &d| n.saturating_mul(d));
    let data_bytes = voxels.saturating_mul(datatype_bytes(datatype).unwrap_or(8));
    let before_data = data_start.saturating_sub(preamble);
    let mut layout = format!("{}, {}", datatype_name(datatype), dims_text(&dims));
    if before_data > 0 {
        layout.push_str(&format!(
            ", after {} of extensions or padding",
            human_bytes(before_data)
        ));
    }
    limits.check(
        path,
        &Declared {
            voxels,
            data_bytes: data_bytes.saturating_add(before_data),
            layout,
        },
    )
}

/// The start of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Size of a NIfTI-1 header plus its extension flag: where the data or the first extension starts.
const NIFTI1_PREAMBLE: usize = 352;

/// A NIfTI-1 volume from the file's (inflated) bytes: the header through the `nifti` crate, the voxels
/// decoded here straight into the volume (only the chosen volume of a 4D file), from `vox_offset` (the crate
/// reads the data right after the extension flag when there is no extension, ignoring `vox_offset`, which
/// shifted every voxel of such files, e.g. INIA19's label volume, `vox_offset` 32976). Values as the crate
/// gives them: the stored type converted to f32, then `scl_slope`/`scl_inter` applied in f32 when the slope
/// is not 0.
fn read_nifti1(path: &Path, bytes: &[u8], volume: Option<usize>) -> Result<Volume, IoError> {
    check_nifti1(bytes).map_err(|e| IoError::corrupt(path, "not a readable NIfTI file", e))?;
    let header = std::panic::catch_unwind(|| NiftiHeader::from_reader(std::io::Cursor::new(bytes)))
        .map_err(|_| IoError::unusable(path, "the NIfTI reader crashed on this file (corrupt header?)"))?
        .map_err(|e| IoError::corrupt(path, "not a readable NIfTI file (truncated or corrupt?)", e))?;
    let declared = declared_data(bytes).expect("the guard parsed this header");
    let Some(size) = datatype_bytes(declared.datatype).filter(|_| is_scalar(declared.datatype)) else {
        return Err(IoError::unusable(
            path,
            format!(
                "NIfTI data type {} is not supported (medico reads scalar volumes)",
                datatype_name(declared.datatype)
            ),
        ));
    };
    let dims: Vec<usize> = declared.dims.iter().map(|&d| d as usize).collect();
    let chosen = choose_volume(path, &dims, volume)?;
    // The guard checked that the data lies within the bytes.
    let data = chosen_data(bytes, declared.data_start as usize, &chosen, size as usize);
    let big_endian = bytes[..4] == 348i32.to_be_bytes();
    let (slope, inter) = (header.scl_slope, header.scl_inter);
    let rescale = move |v: f32| if slope == 0.0 { v } else { v * slope + inter };
    macro_rules! decode {
        ($t:ty, $n:expr) => {
            from_fortran_order(data, chosen.shape, $n, |b| {
                let raw: [u8; $n] = b.try_into().expect("one sample");
                let value = if big_endian {
                    <$t>::from_be_bytes(raw)
                } else {
                    <$t>::from_le_bytes(raw)
                };
                rescale(value as f32)
            })
        };
    }
    let data = match declared.datatype {
        2 => decode!(u8, 1),
        256 => decode!(i8, 1),
        4 => decode!(i16, 2),
        512 => decode!(u16, 2),
        8 => decode!(i32, 4),
        768 => decode!(u32, 4),
        16 => decode!(f32, 4),
        1024 => decode!(i64, 8),
        1280 => decode!(u64, 8),
        64 => decode!(f64, 8),
        _ => unreachable!("is_scalar"),
    };
    Ok(Volume {
        data,
        affine: header_affine(&header),
        grid: GridHeader::Nifti1(Box::new(header)),
        format: "NIfTI-1".into(),
        notes: chosen.note.into_iter().collect(),
    })
}

/// Whether medico decodes this NIfTI data type: real scalars (not complex, RGB or float128).
fn is_scalar(datatype: i16) -> bool {
    matches!(datatype, 2 | 256 | 4 | 512 | 8 | 768 | 16 | 1024 | 1280 | 64)
}

/// The file's bytes, gunzipped if they are gzip; inflation stops where the header says the data ends,
/// so a small corrupt or hostile stream cannot expand without bound, and does not start (past the header)
/// when the header declares more than `limits` allow.
fn decompressed<'a>(path: &Path, raw: &'a [u8], limits: &ReadLimits) -> Result<Cow<'a, [u8]>, IoError> {
    if !raw.starts_with(&GZIP_MAGIC) {
        check_limits(path, raw, limits)?;
        return Ok(Cow::Borrowed(raw));
    }
    let gzip_error = |e| IoError::corrupt(path, "not a readable gzip stream (truncated or corrupt?)", e);
    let mut decoder = flate2::read::MultiGzDecoder::new(raw);
    let mut out = Vec::new();
    (&mut decoder)
        .take(HEADER_PEEK as u64)
        .read_to_end(&mut out)
        .map_err(gzip_error)?;
    check_limits(path, &out, limits)?;
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

/// A NIfTI-2 volume from the file's (inflated) bytes; the voxels decoded straight into the volume (only the
/// chosen volume of a 4D file).
fn read_nifti2(path: &Path, bytes: &[u8], volume: Option<usize>) -> Result<Volume, IoError> {
    let header = Nifti2Header::parse(bytes).map_err(|e| IoError::corrupt(path, "not a readable NIfTI-2 file", e))?;
    let dims: Vec<usize> = (1..=header.dim(0) as usize).map(|d| header.dim(d) as usize).collect();
    let layout = header
        .voxel_layout(bytes.len())
        .map_err(|e| IoError::corrupt(path, "not a readable NIfTI-2 file", e))?;
    let chosen = choose_volume(path, &dims, volume)?;
    let data = from_fortran_order(
        chosen_data(bytes, layout.range.start, &chosen, layout.size),
        chosen.shape,
        layout.size,
        layout.value,
    );
    Ok(Volume {
        data,
        affine: Geometry::of_nifti2(&header).affine(),
        grid: GridHeader::Nifti2(Box::new(header)),
        format: "NIfTI-2".into(),
        notes: chosen.note.into_iter().collect(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use nifti::{InMemNiftiObject, IntoNdArray, NiftiObject};

    /// A single-file NIfTI-1 of `dims` with data type `datatype` (`size` bytes a sample), scaling
    /// `slope`/`inter`, in either byte order, holding finite samples of a fixed pattern.
    fn file(big: bool, dims: &[i16], datatype: i16, size: usize, slope: f32, inter: f32) -> Vec<u8> {
        let i16b = |v: i16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let f32b = |v: f32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut bytes = vec![0u8; 352];
        bytes[..4].copy_from_slice(&if big {
            348i32.to_be_bytes()
        } else {
            348i32.to_le_bytes()
        });
        bytes[40..42].copy_from_slice(&i16b(dims.len() as i16));
        for (i, d) in dims.iter().enumerate() {
            bytes[42 + 2 * i..44 + 2 * i].copy_from_slice(&i16b(*d));
        }
        bytes[70..72].copy_from_slice(&i16b(datatype));
        bytes[72..74].copy_from_slice(&i16b(8 * size as i16));
        for i in 0..4 {
            bytes[76 + 4 * i..80 + 4 * i].copy_from_slice(&f32b(1.0));
        }
        bytes[108..112].copy_from_slice(&f32b(352.0));
        bytes[112..116].copy_from_slice(&f32b(slope));
        bytes[116..120].copy_from_slice(&f32b(inter));
        bytes[344..348].copy_from_slice(b"n+1\0");
        let count: usize = dims.iter().map(|&d| d as usize).product();
        for n in 0..count {
            // Finite samples of every type: small integers, spread over the sign for signed types.
            let v = (n as i64 * 7919 % 2001) - 1000;
            let mut sample: Vec<u8> = match datatype {
                2 => vec![v as u8],
                256 => vec![v as i8 as u8],
                4 => (v as i16).to_le_bytes().to_vec(),
                512 => (v as u16).to_le_bytes().to_vec(),
                8 => ((v << 20) as i32).to_le_bytes().to_vec(),
                768 => ((v << 21) as u32).to_le_bytes().to_vec(),
                16 => (v as f32 / 3.0).to_le_bytes().to_vec(),
                1024 => (v << 50).to_le_bytes().to_vec(),
                1280 => ((v << 52) as u64 + 12345).to_le_bytes().to_vec(),
                64 => (v as f64 / 7.0).to_le_bytes().to_vec(),
                _ => unreachable!(),
            };
            if big {
                sample.reverse();
            }
            bytes.extend(sample);
        }
        bytes
    }

    /// The `nifti` crate's reading (which medico used until it decoded the voxels itself): the whole array
    /// converted to f32 and scaled, then the volume `t` in standard layout.
    fn crate_reading(bytes: &[u8], t: usize) -> Array3<f32> {
        let object = InMemNiftiObject::from_reader(std::io::Cursor::new(bytes)).unwrap();
        let array = object.into_volume().into_ndarray::<f32>().unwrap();
        let array = if array.ndim() == 4 {
            array.index_axis(ndarray::Axis(3), t).to_owned()
        } else {
            array
        };
        let shape = array.shape().to_vec();
        array
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((shape[0], shape[1], shape[2]))
            .unwrap()
    }

    #[test]
    fn voxels_read_as_the_nifti_crate_reads_them_in_every_type_order_and_scaling() {
        let types = [
            (2, 1),
            (256, 1),
            (4, 2),
            (512, 2),
            (8, 4),
            (768, 4),
            (16, 4),
            (1024, 8),
            (1280, 8),
            (64, 8),
        ];
        for (datatype, size) in types {
            for big in [false, true] {
                for (slope, inter) in [(0.0, 5.0), (1.0, 0.0), (2.5, -3.25), (-0.1, 1e6)] {
                    for (dims, t) in [(&[5, 4, 3][..], None), (&[5, 4, 3, 3][..], Some(2))] {
                        let bytes = file(big, dims, datatype, size, slope, inter);
                        let what = format!("type {datatype}, big {big}, scaling {slope} {inter}, dims {dims:?}");
                        let volume = nifti_from_bytes(Path::new("t.nii"), &bytes, t).expect(&what);
                        let expected = crate_reading(&bytes, t.unwrap_or(0));
                        assert!(volume.data.is_standard_layout());
                        let same = volume
                            .data
                            .iter()
                            .zip(&expected)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same && volume.data.shape() == expected.shape(), "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn data_after_padding_is_read_from_vox_offset_and_unsupported_types_are_named() {
        let plain = file(false, &[5, 4, 3], 4, 2, 0.0, 0.0);
        let mut padded = plain[..352].to_vec();
        padded[108..112].copy_from_slice(&1000f32.to_le_bytes());
        padded.resize(1000, 0xA5);
        padded.extend_from_slice(&plain[352..]);
        let a = nifti_from_bytes(Path::new("p.nii"), &plain, None).unwrap();
        let b = nifti_from_bytes(Path::new("p.nii"), &padded, None).unwrap();
        assert_eq!(a.data, b.data);

        let mut rgb = file(false, &[2, 2, 1], 2, 1, 0.0, 0.0);
        rgb[70..72].copy_from_slice(&128i16.to_le_bytes());
        rgb[72..74].copy_from_slice(&24i16.to_le_bytes());
        rgb.extend([0u8; 8]);
        let error = nifti_from_bytes(Path::new("rgb.nii"), &rgb, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("rgb.nii: NIfTI data type rgb24 is not supported"),
            "{error}"
        );
    }
}
