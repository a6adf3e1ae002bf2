//! A check of a NIfTI-1 file before it is read: the header alone is parsed, and any file whose declared
//! voxels or extensions are not present in its bytes is refused, so that neither the `nifti` crate (which
//! allocated what a header declares before reading it; it now reads only the header) nor medico's decoder
//! (which takes the voxels from the bytes at `vox_offset`) is given more than the file holds; it also bounds
//! how far a gzip stream is inflated.

/// Size of the NIfTI-1 header.
const HEADER: usize = 348;
/// Header plus the extension flag: where extensions (or the data) start.
const PREAMBLE: usize = 352;
/// Largest voxel data medico reads from one file.
pub const MAX_DATA_BYTES: u64 = 1 << 34;

/// Why a NIfTI-1 header is refused.
#[derive(Debug, thiserror::Error)]
pub enum Nifti1Error {
    /// Fewer bytes than a header and its extension flag.
    #[error("NIfTI-1 header truncated ({0} of {PREAMBLE} bytes)")]
    Short(usize),
    /// Neither byte order gives `sizeof_hdr` 348.
    #[error("not a NIfTI-1 header (sizeof_hdr is not 348)")]
    SizeofHdr,
    /// Not the single-file magic `n+1`.
    #[error("not a single-file NIfTI-1 (magic is not \"n+1\")")]
    Magic,
    /// `dim[0]` outside 1–7.
    #[error("dim[0] = {0} is not a valid rank (1–7)")]
    Rank(i16),
    /// A dimension below 1.
    #[error("dim[{axis}] = {size} is not a valid size")]
    Size {
        /// Which `dim` entry.
        axis: usize,
        /// Its value.
        size: i16,
    },
    /// Bits per voxel that are not its data type's.
    #[error("bitpix {bitpix} does not fit data type {datatype} ({expected} bits)")]
    DataTypeBits {
        /// `datatype`.
        datatype: i16,
        /// `bitpix`.
        bitpix: i16,
        /// The data type's bits.
        expected: i16,
    },
    /// A data type code NIfTI-1 does not define.
    #[error("unknown NIfTI data type {0}")]
    DataType(i16),
    /// `vox_offset` before the end of the header or not a number.
    #[error("vox_offset {0} lies inside the header")]
    Offset(f32),
    /// An extension whose size is impossible.
    #[error("extension at byte {at} declares {size} bytes")]
    Extension {
        /// Where it starts.
        at: usize,
        /// Its declared size.
        size: i32,
    },
    /// More data declared than medico reads from one file.
    #[error("the header declares {0} bytes of voxels, more than medico reads from one file")]
    TooLarge(u64),
    /// Less data than the header declares.
    #[error("truncated: the header needs {needed} bytes, the file has {len}")]
    Truncated {
        /// Bytes the header implies.
        needed: u64,
        /// Bytes present.
        len: usize,
    },
}

/// The header fields the check needs.
struct Header {
    little_endian: bool,
    vox_offset: f32,
    data_bytes: u64,
}

fn parse(bytes: &[u8]) -> Result<Header, Nifti1Error> {
    if bytes.len() < PREAMBLE {
        return Err(Nifti1Error::Short(bytes.len()));
    }
    let sizeof_hdr: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
    let little_endian = if sizeof_hdr == (HEADER as i32).to_le_bytes() {
        true
    } else if sizeof_hdr == (HEADER as i32).to_be_bytes() {
        false
    } else {
        return Err(Nifti1Error::SizeofHdr);
    };
    if &bytes[344..348] != b"n+1\0" {
        return Err(Nifti1Error::Magic);
    }
    let i16_at = |at: usize| {
        let raw = [bytes[at], bytes[at + 1]];
        if little_endian {
            i16::from_le_bytes(raw)
        } else {
            i16::from_be_bytes(raw)
        }
    };
    let rank = i16_at(40);
    if !(1..=7).contains(&rank) {
        return Err(Nifti1Error::Rank(rank));
    }
    let mut voxels: u64 = 1;
    for axis in 1..=rank as usize {
        let size = i16_at(40 + 2 * axis);
        if size < 1 {
            return Err(Nifti1Error::Size { axis, size });
        }
        voxels = voxels.saturating_mul(size as u64);
    }
    // The `nifti` crate reads the data by `bitpix` and converts it by the data type: both must agree (a file
    // where they differ never read: the conversion found the data inconsistent).
    let datatype = i16_at(70);
    let bits = datatype_bits(datatype).ok_or(Nifti1Error::DataType(datatype))?;
    let bitpix = i16_at(72);
    if bitpix != bits {
        return Err(Nifti1Error::DataTypeBits {
            datatype,
            bitpix,
            expected: bits,
        });
    }
    let raw: [u8; 4] = bytes[108..112].try_into().expect("4 bytes");
    let vox_offset = if little_endian {
        f32::from_le_bytes(raw)
    } else {
        f32::from_be_bytes(raw)
    };
    Ok(Header {
        little_endian,
        vox_offset,
        data_bytes: voxels.saturating_mul(bits as u64 / 8),
    })
}

/// Bits per voxel of a NIfTI-1 data type code.
fn datatype_bits(datatype: i16) -> Option<i16> {
    Some(match datatype {
        2 | 256 => 8,
        4 | 512 => 16,
        128 => 24,
        8 | 16 | 768 | 2304 => 32,
        32 | 64 | 1024 | 1280 => 64,
        1536 | 1792 => 128,
        2048 => 256,
        _ => return None,
    })
}

/// The name of a NIfTI data type code (NIfTI-1 and NIfTI-2 share them).
pub(crate) fn datatype_name(datatype: i16) -> String {
    match datatype {
        2 => "uint8",
        4 => "int16",
        8 => "int32",
        16 => "float32",
        32 => "complex64",
        64 => "float64",
        128 => "rgb24",
        256 => "int8",
        512 => "uint16",
        768 => "uint32",
        1024 => "int64",
        1280 => "uint64",
        1536 => "float128",
        1792 => "complex128",
        2048 => "complex256",
        2304 => "rgba32",
        other => return format!("data type {other}"),
    }
    .to_string()
}

/// Bytes per voxel of a NIfTI data type code, `None` for an unknown code.
pub(crate) fn datatype_bytes(datatype: i16) -> Option<u64> {
    datatype_bits(datatype).map(|bits| bits as u64 / 8)
}

/// What a NIfTI-1 header declares of its voxel data.
#[derive(Debug, Clone)]
pub(crate) struct DeclaredData {
    /// `dim[1..=rank]`.
    pub(crate) dims: Vec<u64>,
    /// The data type code.
    pub(crate) datatype: i16,
    /// Bytes of voxel data.
    pub(crate) data_bytes: u64,
    /// Where the data starts: `vox_offset`, at least past the header and extension flag.
    pub(crate) data_start: u64,
}

/// What the NIfTI-1 header at the start of `head` declares; `None` when it is no readable NIfTI-1 header.
pub(crate) fn declared_data(head: &[u8]) -> Option<DeclaredData> {
    let header = parse(head).ok()?;
    let offset = if header.vox_offset.is_finite() && header.vox_offset > 0.0 {
        header.vox_offset as u64
    } else {
        PREAMBLE as u64
    };
    let i16_at = |at: usize| {
        let raw = [head[at], head[at + 1]];
        if header.little_endian {
            i16::from_le_bytes(raw)
        } else {
            i16::from_be_bytes(raw)
        }
    };
    let rank = i16_at(40) as usize;
    Some(DeclaredData {
        dims: (1..=rank).map(|axis| i16_at(40 + 2 * axis) as u64).collect(),
        datatype: i16_at(70),
        data_bytes: header.data_bytes,
        data_start: offset.max(PREAMBLE as u64),
    })
}

/// Bytes a NIfTI-1 file with this header holds at most (`vox_offset` + voxel data), from its first bytes;
/// `None` when they are no readable NIfTI-1 header.
pub fn declared_len(head: &[u8]) -> Option<u64> {
    let declared = declared_data(head)?;
    Some(declared.data_start.saturating_add(declared.data_bytes))
}

/// Checks a whole single-file NIfTI-1: header fields sane, extensions inside the file, the declared voxels
/// present.
pub fn check_nifti1(bytes: &[u8]) -> Result<(), Nifti1Error> {
    let header = parse(bytes)?;
    if header.data_bytes > MAX_DATA_BYTES {
        return Err(Nifti1Error::TooLarge(header.data_bytes));
    }
    if !(header.vox_offset.is_finite() && header.vox_offset >= PREAMBLE as f32 || header.vox_offset == 0.0) {
        return Err(Nifti1Error::Offset(header.vox_offset));
    }
    let data_start = (header.vox_offset as usize).max(PREAMBLE);
    let needed = (data_start as u64).saturating_add(header.data_bytes);
    if needed > bytes.len() as u64 {
        return Err(Nifti1Error::Truncated {
            needed,
            len: bytes.len(),
        });
    }
    // The data lies within the bytes, so the extensions before it do too.
    if bytes[348] != 0 {
        check_extensions(bytes, &header, data_start)?;
    }
    Ok(())
}

/// Each extension (size, code, data) must have a size of at least 8 and end by the data.
fn check_extensions(bytes: &[u8], header: &Header, data_start: usize) -> Result<(), Nifti1Error> {
    let mut at = PREAMBLE;
    // The crate reads extensions while their offset is below the data, even a last one of fewer than 8 bytes
    // whose size it then takes from the data.
    while at < data_start {
        let Some(raw) = bytes.get(at..at + 4) else {
            return Err(Nifti1Error::Extension { at, size: 0 });
        };
        let raw: [u8; 4] = raw.try_into().expect("4 bytes");
        let size = if header.little_endian {
            i32::from_le_bytes(raw)
        } else {
            i32::from_be_bytes(raw)
        };
        if size < 8 || (at as u64).saturating_add(size as u64) > data_start as u64 {
            return Err(Nifti1Error::Extension { at, size });
        }
        at += size as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian single-file header for `dims` of u8 voxels, with the data after it.
    fn file(dims: &[i16], data: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; PREAMBLE + data];
        bytes[..4].copy_from_slice(&348i32.to_le_bytes());
        bytes[40..42].copy_from_slice(&(dims.len() as i16).to_le_bytes());
        for (i, d) in dims.iter().enumerate() {
            bytes[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        bytes[70..72].copy_from_slice(&2i16.to_le_bytes());
        bytes[72..74].copy_from_slice(&8i16.to_le_bytes());
        bytes[108..112].copy_from_slice(&352f32.to_le_bytes());
        bytes[344..348].copy_from_slice(b"n+1\0");
        bytes
    }

    #[test]
    fn a_complete_file_passes_and_its_length_is_declared() {
        let bytes = file(&[4, 5, 6], 120);
        check_nifti1(&bytes).unwrap();
        assert_eq!(declared_len(&bytes), Some(352 + 120));
    }

    #[test]
    fn declared_data_must_be_present() {
        let err = check_nifti1(&file(&[30000, 30000, 30000], 120)).unwrap_err();
        assert!(err.to_string().contains("more than medico reads"), "{err}");
        let err = check_nifti1(&file(&[100, 100, 10], 120)).unwrap_err();
        assert!(err.to_string().contains("needs 100352 bytes"), "{err}");
    }

    #[test]
    fn impossible_extensions_and_fields_are_named() {
        let mut bytes = file(&[2, 2, 2], 8 + 16);
        bytes[108..112].copy_from_slice(&368f32.to_le_bytes());
        bytes[348] = 1;
        bytes[352..356].copy_from_slice(&i32::MAX.to_le_bytes());
        let err = check_nifti1(&bytes).unwrap_err();
        assert!(err.to_string().contains("extension at byte 352"), "{err}");
        bytes[352..356].copy_from_slice(&16i32.to_le_bytes());
        check_nifti1(&bytes).unwrap();
        let bytes = file(&[2, -2, 2], 8);
        assert!(check_nifti1(&bytes).unwrap_err().to_string().contains("dim[2] = -2"));
    }

    #[test]
    fn bitpix_must_be_the_data_types_and_sizes_the_data() {
        let mut bytes = file(&[2, 2, 2], 8);
        bytes[70..72].copy_from_slice(&16i16.to_le_bytes());
        let err = check_nifti1(&bytes).unwrap_err().to_string();
        assert!(err.contains("bitpix 8 does not fit data type 16 (32 bits)"), "{err}");
        // float32 voxels with bitpix 32: 4 bytes each.
        bytes[72..74].copy_from_slice(&32i16.to_le_bytes());
        let err = check_nifti1(&bytes).unwrap_err().to_string();
        assert!(err.contains("needs 384 bytes"), "{err}");
        bytes[70..72].copy_from_slice(&77i16.to_le_bytes());
        assert!(check_nifti1(&bytes)
            .unwrap_err()
            .to_string()
            .contains("unknown NIfTI data type 77"));
    }

    #[test]
    fn an_extension_header_cut_by_the_data_is_refused() {
        // vox_offset 353: one byte after the extension flag, which the crate still reads as an extension whose
        // size comes from the data.
        let mut bytes = file(&[2, 2, 2], 9);
        bytes[108..112].copy_from_slice(&353f32.to_le_bytes());
        bytes[348] = 1;
        bytes[352..356].copy_from_slice(&0x2020_2020i32.to_le_bytes());
        let err = check_nifti1(&bytes).unwrap_err().to_string();
        assert!(err.contains("extension at byte 352"), "{err}");
    }
}
