//! NRRD in and out, as 3D Slicer writes and reads it. Out: masks — `uint8`, gzip, the volume's grid in LPS
//! space (`space directions`/`space origin`); the MONAI Label Slicer module asks for `.nrrd` results. In:
//! attached-header 3D scalar volumes, raw or gzip, any scalar type, either endianness, in LPS, RAS or LAS
//! space; the declared data size is checked against the bytes present (and gzip inflated no further) before
//! anything is allocated for it.

use std::io::{Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::Array3;

use crate::atomic_output::write_atomically;
use crate::dicom_io::{check_affine, nifti_header_for};
use crate::input::{dims_text, read_after_head, Declared, ReadLimits};
use crate::nifti1_guard::MAX_DATA_BYTES;
use crate::volume::{fortran_order, from_fortran_order, GridHeader, Volume};
use crate::IoError;

/// Longest header read.
const MAX_HEADER: usize = 1 << 16;

/// True for `.nrrd` and `.nhdr` paths.
pub fn is_nrrd(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    name.ends_with(".nrrd") || name.ends_with(".nhdr")
}

/// A scalar type NRRD names, with its size.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl Scalar {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "signed char" | "int8" | "int8_t" => Self::I8,
            "uchar" | "unsigned char" | "uint8" | "uint8_t" => Self::U8,
            "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => Self::I16,
            "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => Self::U16,
            "int" | "signed int" | "int32" | "int32_t" => Self::I32,
            "uint" | "unsigned int" | "uint32" | "uint32_t" => Self::U32,
            "longlong"
            | "long long"
            | "long long int"
            | "signed long long"
            | "signed long long int"
            | "int64"
            | "int64_t" => Self::I64,
            "ulonglong" | "unsigned long long" | "unsigned long long int" | "uint64" | "uint64_t" => Self::U64,
            "float" => Self::F32,
            "double" => Self::F64,
            _ => return None,
        })
    }

    /// The type's name, for messages.
    fn name(self) -> &'static str {
        match self {
            Self::I8 => "int8",
            Self::U8 => "uint8",
            Self::I16 => "int16",
            Self::U16 => "uint16",
            Self::I32 => "int32",
            Self::U32 => "uint32",
            Self::I64 => "int64",
            Self::U64 => "uint64",
            Self::F32 => "float",
            Self::F64 => "double",
        }
    }

    fn size(self) -> usize {
        match self {
            Self::I8 | Self::U8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
        }
    }

    /// The volume `[i, j, k]` of `sizes` from voxel data of this type stored with `i` fastest: one decoder
    /// per type, so that the conversion is inlined in the pass.
    fn volume(self, data: &[u8], sizes: [usize; 3], big: bool) -> Array3<f32> {
        macro_rules! decode {
            ($t:ty, $n:expr) => {
                from_fortran_order(data, sizes, $n, |b| {
                    let bytes: [u8; $n] = b.try_into().expect("sized chunk");
                    (if big {
                        <$t>::from_be_bytes(bytes)
                    } else {
                        <$t>::from_le_bytes(bytes)
                    }) as f32
                })
            };
        }
        match self {
            Self::I8 => decode!(i8, 1),
            Self::U8 => decode!(u8, 1),
            Self::I16 => decode!(i16, 2),
            Self::U16 => decode!(u16, 2),
            Self::I32 => decode!(i32, 4),
            Self::U32 => decode!(u32, 4),
            Self::I64 => decode!(i64, 8),
            Self::U64 => decode!(u64, 8),
            Self::F32 => decode!(f32, 4),
            Self::F64 => decode!(f64, 8),
        }
    }
}

/// `(a,b,c)` as three numbers.
fn vector(text: &str) -> Option<[f64; 3]> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    let values: Vec<f64> = inner.split(',').map(|v| v.trim().parse().ok()).collect::<Option<_>>()?;
    values.try_into().ok()
}

/// How the data of a NRRD file is stored after its header.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Encoding {
    Raw,
    Gzip,
}

/// What a NRRD header says: where the data starts, its type, sizes, byte order and encoding, and the grid.
struct NrrdHeader {
    /// Where the data starts (after the blank line ending the header).
    data_start: usize,
    scalar: Scalar,
    sizes: [usize; 3],
    big_endian: bool,
    /// Bytes of voxel data the sizes and type declare.
    declared: usize,
    encoding: Encoding,
    /// The encoding as the header names it ("raw", "gzip", "gz").
    encoding_name: String,
    affine: [[f64; 4]; 4],
}

impl NrrdHeader {
    /// What the header declares, for [`ReadLimits::check`].
    fn declared(&self) -> Declared {
        let sizes = self.sizes.map(|n| n as u64);
        Declared {
            voxels: sizes.iter().product(),
            data_bytes: self.declared as u64,
            layout: format!("{}, {}", self.scalar.name(), dims_text(&sizes)),
        }
    }
}

/// Parses and checks the header at the start of `bytes` (only its first [`MAX_HEADER`] bytes are looked
/// at); `path` names the file in errors.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<NrrdHeader, IoError> {
    let bad = |what: String| IoError::unusable(path, what);
    if !bytes.starts_with(b"NRRD000") {
        return Err(bad("not a NRRD file (no NRRD000x magic)".into()));
    }
    let end = bytes[..bytes.len().min(MAX_HEADER)]
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or_else(|| {
            bad("no end of header (a blank line) in the first 64 KB; detached headers (.nhdr) are not read".into())
        })?;
    let header = std::str::from_utf8(&bytes[..end]).map_err(|_| bad("header is not text".into()))?;
    let mut fields = std::collections::HashMap::new();
    for line in header.lines().skip(1) {
        if line.starts_with('#') || line.contains(":=") {
            continue;
        }
        if let Some((key, value)) = line.split_once(": ") {
            fields.insert(key.trim().to_lowercase(), value.trim().to_string());
        }
    }
    let field = |key: &str| fields.get(key).map(String::as_str);
    if field("data file").or(field("datafile")).is_some() {
        return Err(bad(
            "detached data files are not read; save the volume as a single .nrrd".into(),
        ));
    }
    for skip in ["line skip", "byte skip", "lineskip", "byteskip"] {
        if field(skip).is_some_and(|v| v != "0") {
            return Err(bad(format!("'{skip}' is not supported")));
        }
    }
    let scalar = field("type")
        .and_then(Scalar::parse)
        .ok_or_else(|| bad(format!("unsupported or missing type {:?}", field("type"))))?;
    if field("dimension") != Some("3") {
        return Err(bad(format!(
            "dimension {:?}: only 3D scalar volumes are read",
            field("dimension")
        )));
    }
    let sizes: Vec<usize> = field("sizes")
        .unwrap_or_default()
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()
        .filter(|s: &Vec<usize>| s.len() == 3 && s.iter().all(|&n| n > 0))
        .ok_or_else(|| bad(format!("sizes {:?} are not three positive numbers", field("sizes"))))?;
    let big_endian = match field("endian") {
        Some("big") => true,
        Some("little") | None => false,
        Some(other) => return Err(bad(format!("endian '{other}'"))),
    };
    let count = sizes.iter().try_fold(1usize, |a, &n| a.checked_mul(n));
    let declared = count
        .and_then(|c| c.checked_mul(scalar.size()))
        .filter(|&b| (b as u64) <= MAX_DATA_BYTES)
        .ok_or_else(|| bad(format!("sizes {sizes:?} declare more data than medico reads")))?;
    let encoding = match field("encoding") {
        Some("raw") => Encoding::Raw,
        Some("gzip") | Some("gz") => Encoding::Gzip,
        other => return Err(bad(format!("encoding {other:?}: raw and gzip are read"))),
    };
    let space_sign: [f64; 3] = match field("space").map(str::to_lowercase).as_deref() {
        Some("left-posterior-superior") | Some("lps") => [-1.0, -1.0, 1.0],
        Some("right-anterior-superior") | Some("ras") => [1.0, 1.0, 1.0],
        Some("left-anterior-superior") | Some("las") => [-1.0, 1.0, 1.0],
        Some(other) => return Err(bad(format!("space '{other}': LPS, RAS and LAS are read"))),
        None => [1.0, 1.0, 1.0],
    };
    let directions: [[f64; 3]; 3] = match field("space directions") {
        Some(text) => {
            let parts: Vec<[f64; 3]> = text
                .split_whitespace()
                .map(vector)
                .collect::<Option<_>>()
                .filter(|p: &Vec<[f64; 3]>| p.len() == 3)
                .ok_or_else(|| bad(format!("space directions '{text}' are not three vectors")))?;
            [parts[0], parts[1], parts[2]]
        }
        None => {
            let spacings: Vec<f64> = field("spacings")
                .map(|s| s.split_whitespace().filter_map(|v| v.parse().ok()).collect())
                .unwrap_or_else(|| vec![1.0; 3]);
            let at = |a: usize| spacings.get(a).copied().filter(|v: &f64| v.is_finite()).unwrap_or(1.0);
            [[at(0), 0.0, 0.0], [0.0, at(1), 0.0], [0.0, 0.0, at(2)]]
        }
    };
    let origin = match field("space origin") {
        Some(text) => vector(text).ok_or_else(|| bad(format!("space origin '{text}' is not a vector")))?,
        None => [0.0; 3],
    };
    let mut affine = [[0.0; 4]; 4];
    for r in 0..3 {
        for c in 0..3 {
            affine[r][c] = directions[c][r] * space_sign[r] + 0.0;
        }
        affine[r][3] = origin[r] * space_sign[r] + 0.0;
    }
    affine[3][3] = 1.0;
    check_affine(path, &affine)?;
    Ok(NrrdHeader {
        data_start: end + 2,
        scalar,
        sizes: [sizes[0], sizes[1], sizes[2]],
        big_endian,
        declared,
        encoding,
        encoding_name: field("encoding").unwrap_or_default().to_string(),
        affine,
    })
}

/// Reads an attached-header NRRD volume (`.nrrd`). No limit on its size beyond the reader's sanity bound:
/// see [`read_nrrd_within`] for files from untrusted sources.
pub fn read_nrrd(path: &Path) -> Result<Volume, IoError> {
    read_nrrd_within(path, &ReadLimits::UNLIMITED)
}

/// Reads an attached-header NRRD volume as [`read_nrrd`] does, refusing with [`IoError::TooLarge`] a file
/// whose header declares more than `limits` allow, before the rest of the file is read.
pub fn read_nrrd_within(path: &Path, limits: &ReadLimits) -> Result<Volume, IoError> {
    let bytes = read_after_head(path, MAX_HEADER, |head| {
        limits.check(path, &parse_header(path, head)?.declared())
    })?;
    nrrd_from_bytes_within(path, &bytes, limits)
}

/// A NRRD volume from a file's bytes; `path` names it in errors. No limit on its size: see
/// [`nrrd_from_bytes_within`].
pub fn nrrd_from_bytes(path: &Path, bytes: &[u8]) -> Result<Volume, IoError> {
    nrrd_from_bytes_within(path, bytes, &ReadLimits::UNLIMITED)
}

/// A NRRD volume from a file's bytes, refusing with [`IoError::TooLarge`] one whose header declares more
/// than `limits` allow, before a gzip body is inflated. A gzip body of several members is read whole.
pub fn nrrd_from_bytes_within(path: &Path, bytes: &[u8], limits: &ReadLimits) -> Result<Volume, IoError> {
    let bad = |what: String| IoError::unusable(path, what);
    let header = parse_header(path, bytes)?;
    limits.check(path, &header.declared())?;
    let declared = header.declared;
    let body = &bytes[header.data_start..];
    let data = match header.encoding {
        Encoding::Raw => {
            if body.len() < declared {
                return Err(bad(format!(
                    "{} data bytes; the header declares {declared} (truncated?)",
                    body.len()
                )));
            }
            std::borrow::Cow::Borrowed(&body[..declared])
        }
        Encoding::Gzip => {
            let mut out = Vec::new();
            MultiGzDecoder::new(body)
                .take(declared as u64)
                .read_to_end(&mut out)
                .map_err(|e| IoError::corrupt(path, "not a readable gzip stream (truncated or corrupt?)", e))?;
            if out.len() < declared {
                return Err(bad(format!(
                    "{} data bytes inflated; the header declares {declared} (truncated?)",
                    out.len()
                )));
            }
            std::borrow::Cow::Owned(out)
        }
    };
    let (scalar, big_endian) = (header.scalar, header.big_endian);
    let volume = scalar.volume(&data, header.sizes, big_endian);
    drop(data);
    let format = format!("NRRD ({scalar:?}, {})", header.encoding_name);
    let affine = header.affine;
    let nifti_header = std::panic::catch_unwind(|| nifti_header_for(&volume, &affine, &format))
        .map_err(|_| bad("the space directions give no NIfTI orientation (corrupt geometry?)".into()))?;
    Ok(Volume {
        data: volume,
        affine,
        grid: GridHeader::Nifti1(Box::new(nifti_header)),
        format,
        notes: Vec::new(),
    })
}

/// RAS+ (NIfTI's world) to LPS (DICOM's and Slicer's NRRD files): x and y change sign.
const RAS_TO_LPS: [f64; 3] = [-1.0, -1.0, 1.0];

/// The header of a gzip-encoded `uint8` NRRD of `volume`'s grid.
fn header(volume: &Volume) -> String {
    let [ni, nj, nk] = volume.shape();
    // `+ 0.0` turns the -0 of a sign change into 0.
    let vector = |v: [f64; 3]| format!("({},{},{})", v[0] + 0.0, v[1] + 0.0, v[2] + 0.0);
    let directions: Vec<String> = (0..3)
        .map(|axis| vector(std::array::from_fn(|r| volume.affine[r][axis] * RAS_TO_LPS[r])))
        .collect();
    let origin = vector(std::array::from_fn(|r| volume.affine[r][3] * RAS_TO_LPS[r]));
    format!(
        "NRRD0004\n# written by medico\ntype: uint8\ndimension: 3\nspace: left-posterior-superior\n\
         sizes: {ni} {nj} {nk}\nspace directions: {}\nkinds: domain domain domain\nendian: little\n\
         encoding: gzip\nspace origin: {origin}\n\n",
        directions.join(" ")
    )
}

/// The bytes of a mask `[i, j, k]` on `volume`'s grid as a gzip NRRD file.
pub fn mask_nrrd_bytes(volume: &Volume, mask: &Array3<u8>) -> std::io::Result<Vec<u8>> {
    let mut out = header(volume).into_bytes();
    let mut encoder = GzEncoder::new(&mut out, Compression::fast());
    encoder.write_all(&fortran_order(mask))?;
    encoder.finish()?;
    Ok(out)
}

/// Writes a mask `[i, j, k]` as a gzip NRRD on `volume`'s grid, atomically.
pub fn write_mask_nrrd(path: &Path, volume: &Volume, mask: &Array3<u8>) -> Result<(), IoError> {
    let bytes = mask_nrrd_bytes(volume, mask).map_err(|e| IoError::write(path, e))?;
    write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume() -> Volume {
        Volume {
            data: Array3::zeros((3, 2, 2)),
            affine: [
                [-2.0, 0.0, 0.0, 10.0],
                [0.0, 1.5, 0.0, -20.0],
                [0.0, 0.0, 3.0, 5.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            grid: GridHeader::Nifti1(Box::default()),
            format: "test".into(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn the_grid_is_written_in_lps_and_voxels_fastest_along_i() {
        let mut mask = Array3::<u8>::zeros((3, 2, 2));
        mask[[2, 0, 0]] = 1;
        mask[[0, 1, 1]] = 1;
        let bytes = mask_nrrd_bytes(&volume(), &mask).unwrap();
        let split = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
        let text = std::str::from_utf8(&bytes[..split]).unwrap();
        assert!(text.contains("sizes: 3 2 2"), "{text}");
        assert!(text.contains("space directions: (2,0,0) (0,-1.5,0) (0,0,3)"), "{text}");
        assert!(text.contains("space origin: (-10,20,5)"), "{text}");
        let mut voxels = Vec::new();
        flate2::read::GzDecoder::new(&bytes[split + 2..])
            .read_to_end(&mut voxels)
            .unwrap();
        assert_eq!(voxels, vec![0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn a_written_mask_reads_back_with_its_grid() {
        let mut mask = Array3::<u8>::zeros((3, 2, 2));
        mask[[2, 0, 1]] = 1;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.nrrd");
        write_mask_nrrd(&path, &volume(), &mask).unwrap();
        let back = read_nrrd(&path).unwrap();
        assert_eq!(back.affine, volume().affine);
        assert_eq!(back.data.mapv(|v| v as u8), mask);
    }

    #[test]
    fn raw_big_endian_shorts_in_ras_space() {
        let mut bytes = b"NRRD0004\ntype: short\ndimension: 3\nspace: RAS\nsizes: 2 1 1\nendian: big\n\
            encoding: raw\nspace directions: (0.5,0,0) (0,2,0) (0,0,3)\nspace origin: (1,2,3)\n\n"
            .to_vec();
        bytes.extend_from_slice(&[0x01, 0x00, 0xff, 0xfe]);
        let v = nrrd_from_bytes(Path::new("x.nrrd"), &bytes).unwrap();
        assert_eq!(v.data.as_slice().unwrap(), &[256.0, -2.0]);
        assert_eq!(v.affine[0], [0.5, 0.0, 0.0, 1.0]);
        assert_eq!(v.affine[2], [0.0, 0.0, 3.0, 3.0]);
    }

    #[test]
    fn truncated_or_unsupported_files_are_refused_naming_the_problem() {
        let head = "NRRD0004\ntype: float\ndimension: 3\nsizes: 100 100 100\nencoding: raw\n\n";
        let mut bytes = head.as_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 64]);
        let err = nrrd_from_bytes(Path::new("t.nrrd"), &bytes).unwrap_err().to_string();
        assert!(err.contains("t.nrrd") && err.contains("truncated"), "{err}");
        let gz = head.replace("raw", "gzip");
        let mut bytes = gz.as_bytes().to_vec();
        bytes.extend_from_slice(b"not gzip");
        assert!(nrrd_from_bytes(Path::new("g.nrrd"), &bytes).is_err());
        let huge = "NRRD0004\ntype: double\ndimension: 3\nsizes: 100000 100000 100000\nencoding: raw\n\n";
        let err = nrrd_from_bytes(Path::new("h.nrrd"), huge.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("more data than medico reads"), "{err}");
        let detached = "NRRD0004\ntype: float\ndimension: 3\nsizes: 1 1 1\ndata file: x.raw\n\n";
        assert!(nrrd_from_bytes(Path::new("d.nhdr"), detached.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("detached"));
        assert!(nrrd_from_bytes(Path::new("n.nrrd"), b"P5 not nrrd").is_err());
        // Found by the fuzzer: a zero direction (the NIfTI header would not be built).
        let singular = "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 1 1 1\nencoding: raw\n\
            space directions: (0,0,0) (0,1,0) (0,0,2)\n\n\x01";
        let err = nrrd_from_bytes(Path::new("s.nrrd"), singular.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no usable voxel grid"), "{err}");
    }
}
