//! NIfTI-2 (540-byte header, 64-bit dimensions and double-precision geometry), which the `nifti` crate
//! does not read. The header bytes are kept as they are, so a mask is written back with the input's
//! exact header (only the data type, dimensions, scaling and offset change).

use std::io::Write;

/// Size of a NIfTI-2 header in bytes.
pub const HEADER_SIZE: usize = 540;
/// Header + the 4-byte extension flag: where a mask's voxels start.
const MASK_VOX_OFFSET: usize = HEADER_SIZE + 4;
const MAGICS: [&[u8; 8]; 2] = [b"n+2\0\r\n\x1a\n", b"ni2\0\r\n\x1a\n"];

/// Field offsets in the NIfTI-2 header.
mod at {
    pub const DATATYPE: usize = 12;
    pub const BITPIX: usize = 14;
    pub const DIM: usize = 16;
    pub const PIXDIM: usize = 104;
    pub const VOX_OFFSET: usize = 168;
    pub const SCL_SLOPE: usize = 176;
    pub const SCL_INTER: usize = 184;
    pub const CAL_MAX: usize = 192;
    pub const CAL_MIN: usize = 200;
    pub const QFORM_CODE: usize = 344;
    pub const SFORM_CODE: usize = 348;
    pub const QUATERN: usize = 352;
    pub const SROW: usize = 400;
    pub const INTENT_CODE: usize = 504;
}

/// A parsed NIfTI-2 header.
#[derive(Debug, Clone)]
pub struct Nifti2Header {
    raw: [u8; HEADER_SIZE],
    big_endian: bool,
}

/// True when `bytes` start like a NIfTI-2 header (either byte order).
pub fn is_nifti2(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && (bytes[..4] == 540i32.to_le_bytes() || bytes[..4] == 540i32.to_be_bytes())
}

/// Why a NIfTI-2 header or its data is refused.
#[derive(Debug, thiserror::Error)]
pub enum Nifti2Error {
    /// Fewer bytes than a header.
    #[error("NIfTI-2 header truncated ({0} of {HEADER_SIZE} bytes)")]
    TruncatedHeader(usize),
    /// Not a NIfTI-2 magic string.
    #[error("bad NIfTI-2 magic")]
    Magic,
    /// `dim[0]` outside 1–7.
    #[error("dim[0] = {0} is not a valid rank (1–7)")]
    Rank(i64),
    /// A dimension below 1.
    #[error("dim[{axis}] = {size} is not a valid size")]
    Size {
        /// Which `dim` entry.
        axis: usize,
        /// Its value.
        size: i64,
    },
    /// A data type medico does not decode.
    #[error("NIfTI data type {0} is not supported (complex or RGB?)")]
    DataType(i16),
    /// A negative `vox_offset`.
    #[error("negative vox_offset")]
    NegativeOffset,
    /// Dimensions whose product overflows.
    #[error("the dimensions overflow")]
    Overflow,
    /// Less data than the header declares.
    #[error("truncated: the header needs {needed} bytes of data and header, the file has {len}")]
    TruncatedData {
        /// Bytes the header implies.
        needed: usize,
        /// Bytes the file has.
        len: usize,
    },
}

impl Nifti2Header {
    /// Parses and checks the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Nifti2Error> {
        if bytes.len() < HEADER_SIZE {
            return Err(Nifti2Error::TruncatedHeader(bytes.len()));
        }
        let big_endian = bytes[..4] == 540i32.to_be_bytes();
        let mut raw = [0u8; HEADER_SIZE];
        raw.copy_from_slice(&bytes[..HEADER_SIZE]);
        let header = Self { raw, big_endian };
        if !MAGICS.iter().any(|m| &raw[4..12] == *m) {
            return Err(Nifti2Error::Magic);
        }
        let rank = header.dim(0);
        if !(1..=7).contains(&rank) {
            return Err(Nifti2Error::Rank(rank));
        }
        for d in 1..=rank as usize {
            if header.dim(d) < 1 {
                return Err(Nifti2Error::Size {
                    axis: d,
                    size: header.dim(d),
                });
            }
        }
        Ok(header)
    }

    fn bytes<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.raw[offset..offset + N]);
        if self.big_endian {
            b.reverse();
        }
        b
    }

    fn put(&mut self, offset: usize, mut bytes: Vec<u8>) {
        if self.big_endian {
            bytes.reverse();
        }
        self.raw[offset..offset + bytes.len()].copy_from_slice(&bytes);
    }

    fn i16_at(&self, offset: usize) -> i16 {
        i16::from_le_bytes(self.bytes(offset))
    }
    fn i32_at(&self, offset: usize) -> i32 {
        i32::from_le_bytes(self.bytes(offset))
    }
    fn i64_at(&self, offset: usize) -> i64 {
        i64::from_le_bytes(self.bytes(offset))
    }
    fn f64_at(&self, offset: usize) -> f64 {
        f64::from_le_bytes(self.bytes(offset))
    }

    /// `dim[i]` (0: rank).
    pub fn dim(&self, i: usize) -> i64 {
        self.i64_at(at::DIM + 8 * i)
    }
    /// `pixdim[i]` (0: qfac).
    pub fn pixdim(&self, i: usize) -> f64 {
        self.f64_at(at::PIXDIM + 8 * i)
    }
    /// NIfTI data type code.
    pub fn datatype(&self) -> i16 {
        self.i16_at(at::DATATYPE)
    }
    /// Byte offset of the voxels.
    pub fn vox_offset(&self) -> i64 {
        self.i64_at(at::VOX_OFFSET)
    }
    /// `(slope, intercept)`; a zero slope means no scaling.
    pub fn scaling(&self) -> (f64, f64) {
        (self.f64_at(at::SCL_SLOPE), self.f64_at(at::SCL_INTER))
    }
    /// `(qform_code, sform_code)`.
    pub fn codes(&self) -> (i32, i32) {
        (self.i32_at(at::QFORM_CODE), self.i32_at(at::SFORM_CODE))
    }
    /// `quatern_b, quatern_c, quatern_d, qoffset_x, qoffset_y, qoffset_z`.
    pub fn quatern(&self) -> [f64; 6] {
        std::array::from_fn(|i| self.f64_at(at::QUATERN + 8 * i))
    }
    /// The three sform rows.
    pub fn srow(&self) -> [[f64; 4]; 3] {
        std::array::from_fn(|r| std::array::from_fn(|c| self.f64_at(at::SROW + 8 * (4 * r + c))))
    }
    /// The NIfTI intent code.
    pub fn intent_code(&self) -> i32 {
        self.i32_at(at::INTENT_CODE)
    }

    /// Voxels the dimensions declare, all volumes of a 4D file; `None` when their product overflows.
    pub fn voxel_count(&self) -> Option<u64> {
        (1..=self.dim(0) as usize).try_fold(1u64, |n, d| n.checked_mul(self.dim(d) as u64))
    }

    /// Bytes a file with this header holds at most: `vox_offset` plus the voxel data (8 bytes per voxel for
    /// a data type medico does not decode); `None` when the numbers overflow.
    pub fn declared_len(&self) -> Option<u64> {
        let size = self.sample_decoder().map_or(8, |(size, _)| size as u64);
        self.voxel_count()?
            .checked_mul(size)?
            .checked_add(u64::try_from(self.vox_offset()).ok()?)
    }

    /// Bytes per sample and the decoder of one sample, for the data types medico reads.
    fn sample_decoder(&self) -> Result<(usize, SampleDecoder), Nifti2Error> {
        Ok(match self.datatype() {
            2 => (1, |b, _| b[0] as f64),
            256 => (1, |b, _| b[0] as i8 as f64),
            4 => (2, |b, be| {
                endian(i16::from_le_bytes, i16::from_be_bytes, be, [b[0], b[1]]) as f64
            }),
            512 => (2, |b, be| {
                endian(u16::from_le_bytes, u16::from_be_bytes, be, [b[0], b[1]]) as f64
            }),
            8 => (4, |b, be| {
                endian(i32::from_le_bytes, i32::from_be_bytes, be, first4(b)) as f64
            }),
            768 => (4, |b, be| {
                endian(u32::from_le_bytes, u32::from_be_bytes, be, first4(b)) as f64
            }),
            16 => (4, |b, be| {
                endian(f32::from_le_bytes, f32::from_be_bytes, be, first4(b)) as f64
            }),
            1024 => (8, |b, be| endian(i64::from_le_bytes, i64::from_be_bytes, be, b) as f64),
            1280 => (8, |b, be| endian(u64::from_le_bytes, u64::from_be_bytes, be, b) as f64),
            64 => (8, |b, be| endian(f64::from_le_bytes, f64::from_be_bytes, be, b)),
            other => return Err(Nifti2Error::DataType(other)),
        })
    }

    /// Where the whole voxel data (every volume) lies in a file of `file_len` bytes and how its samples
    /// decode (scaling applied); refused when the file does not hold it.
    pub(crate) fn voxel_layout(&self, file_len: usize) -> Result<VoxelLayout<impl Fn(&[u8]) -> f32>, Nifti2Error> {
        let count = (1..=self.dim(0) as usize).try_fold(1usize, |n, d| n.checked_mul(self.dim(d) as usize));
        let count = count.ok_or(Nifti2Error::Overflow)?;
        let (size, decode) = self.sample_decoder()?;
        let start = usize::try_from(self.vox_offset()).map_err(|_| Nifti2Error::NegativeOffset)?;
        let needed = count.checked_mul(size).and_then(|n| n.checked_add(start));
        let end = needed.ok_or(Nifti2Error::Overflow)?;
        if end > file_len {
            return Err(Nifti2Error::TruncatedData {
                needed: end,
                len: file_len,
            });
        }
        let (slope, inter) = self.scaling();
        let scale = slope != 0.0 && slope.is_finite() && (slope != 1.0 || inter != 0.0);
        let big_endian = self.big_endian;
        let value = move |chunk: &[u8]| {
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(chunk);
            let v = decode(b, big_endian);
            (if scale { v * slope + inter } else { v }) as f32
        };
        Ok(VoxelLayout {
            size,
            value,
            range: start..end,
        })
    }

    /// Decodes the voxels (Fortran order, scaling applied) from the whole file's bytes.
    pub fn read_voxels(&self, file: &[u8]) -> Result<Vec<f32>, Nifti2Error> {
        let layout = self.voxel_layout(file.len())?;
        Ok(file[layout.range].chunks_exact(layout.size).map(layout.value).collect())
    }

    /// The file bytes of a `u8` mask on this header's grid: header with data type uint8, the spatial
    /// dimensions (rank 3), no scaling, no extensions; then the voxels (Fortran order).
    pub fn mask_file(&self, voxels: &[u8]) -> Vec<u8> {
        let mut header = self.clone();
        header.put(at::DATATYPE, 2i16.to_le_bytes().to_vec());
        header.put(at::BITPIX, 8i16.to_le_bytes().to_vec());
        header.put(at::DIM, 3i64.to_le_bytes().to_vec());
        for d in 4..8 {
            header.put(at::DIM + 8 * d, 1i64.to_le_bytes().to_vec());
        }
        header.put(at::VOX_OFFSET, (MASK_VOX_OFFSET as i64).to_le_bytes().to_vec());
        header.put(at::SCL_SLOPE, 1f64.to_le_bytes().to_vec());
        header.put(at::SCL_INTER, 0f64.to_le_bytes().to_vec());
        header.put(at::CAL_MAX, 1f64.to_le_bytes().to_vec());
        header.put(at::CAL_MIN, 0f64.to_le_bytes().to_vec());
        header.put(at::INTENT_CODE, 0i32.to_le_bytes().to_vec());
        let mut out = Vec::with_capacity(MASK_VOX_OFFSET + voxels.len());
        out.extend_from_slice(&header.raw);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(voxels);
        out
    }
}

/// Where a NIfTI-2 file's voxel data lies and how its samples decode.
pub(crate) struct VoxelLayout<F> {
    /// Bytes per sample.
    pub(crate) size: usize,
    /// A sample's value, scaling applied.
    pub(crate) value: F,
    /// The bytes of the whole voxel data in the file.
    pub(crate) range: std::ops::Range<usize>,
}

/// Decodes one sample from its bytes (first `size` of 8) and the byte order (true: big endian).
type SampleDecoder = fn([u8; 8], bool) -> f64;

fn endian<T, const N: usize>(le: fn([u8; N]) -> T, be: fn([u8; N]) -> T, big: bool, b: [u8; N]) -> T {
    if big {
        be(b)
    } else {
        le(b)
    }
}

fn first4(b: [u8; 8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// Writes `bytes` gzip-compressed (for `.nii.gz`) or as they are.
pub fn write_maybe_gzip(out: &mut impl Write, bytes: &[u8], gzip: bool) -> std::io::Result<()> {
    if gzip {
        let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        encoder.write_all(bytes)?;
        encoder.finish()?;
        Ok(())
    } else {
        out.write_all(bytes)
    }
}
