//! A bound on memory before any DICOM value is allocated: walks the element headers of a file's bytes
//! and rejects any element or item whose declared length runs past the end of the data.
//!
//! The DICOM parser reserves and zero-fills a value's declared length before reading it, so a 10 kB
//! file whose element claims 4 GB would make it allocate 4 GB. This walk reads only headers (tag, VR,
//! length), skips defined-length values, and steps into undefined-length sequences, items and
//! encapsulated pixel data, so its cost is one pass over the headers and no allocation. Deflated
//! datasets are inflated with a cap first.

use std::io::Read;

/// A declared length or structure the guard refuses; names the element.
#[derive(Debug, thiserror::Error)]
pub enum LengthError {
    /// An element or item longer than what is left of the file.
    #[error("element ({group:04X},{element:04X}) claims {length} bytes but only {remaining} remain in the file (corrupt or truncated)")]
    Overrun {
        /// Tag group.
        group: u16,
        /// Tag element.
        element: u16,
        /// Declared length.
        length: u32,
        /// Bytes left after its header.
        remaining: usize,
    },
    /// A binary value whose length is not a whole number of its values: dicom-rs reads only the whole
    /// values and so loses its place in the file.
    #[error("element ({group:04X},{element:04X}) of VR {vr} has {length} bytes, not a multiple of {size}")]
    Misaligned {
        /// Tag group.
        group: u16,
        /// Tag element.
        element: u16,
        /// The value representation.
        vr: String,
        /// Declared length.
        length: u32,
        /// Bytes per value of the VR.
        size: u32,
    },
    /// An element header cut off by the end of the data.
    #[error("truncated element header at byte {0}")]
    TruncatedHeader(usize),
    /// Sequences nested deeper than [`MAX_SEQUENCE_DEPTH`].
    #[error("sequences nested more than {MAX_SEQUENCE_DEPTH} deep")]
    TooDeep,
    /// A deflated dataset that does not inflate.
    #[error("the deflated dataset cannot be inflated")]
    Inflate(#[source] std::io::Error),
    /// A deflated dataset that inflates beyond the bytes the caller allows.
    #[error("the deflated dataset inflates to more than {0} bytes")]
    InflatedBeyond(u64),
    /// A deflated dataset that inflates beyond [`MAX_INFLATE_RATIO`] times the file.
    #[error("the deflated dataset inflates to more than {MAX_INFLATE_RATIO} times the file size")]
    InflateRatio,
}

/// Inflated deflate datasets larger than this many times the file are refused (zip-bomb guard).
const MAX_INFLATE_RATIO: u64 = 1000;
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// How a dataset is encoded.
#[derive(Debug, Clone, Copy)]
struct Encoding {
    explicit_vr: bool,
    big_endian: bool,
}

/// Checks every declared length in the DICOM file `bytes`; the error names the offending element.
pub fn check_lengths(bytes: &[u8]) -> Result<(), LengthError> {
    check_lengths_within(bytes, u64::MAX)
}

/// [`check_lengths`], refusing a deflated dataset that inflates to more than `max_inflated` bytes
/// ([`LengthError::InflatedBeyond`]) without inflating further.
pub fn check_lengths_within(bytes: &[u8], max_inflated: u64) -> Result<(), LengthError> {
    let start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        132
    } else {
        0
    };
    let meta_encoding = Encoding {
        explicit_vr: true,
        big_endian: false,
    };
    // File meta group (0002,xxxx): always explicit VR little endian.
    let mut transfer_syntax = String::new();
    let mut pos = start;
    // dicom-rs reads the meta elements after the group length (0002,0000) until that many bytes are read
    // (whatever their group), and the dataset starts there.
    let mut group_length: Option<u64> = None;
    let mut meta_read: u64 = 0;
    while pos + 8 <= bytes.len() {
        let in_meta = match group_length {
            // Read on while the declared length lasts, whatever the elements' group.
            Some(length) => meta_read < length,
            None => u16::from_le_bytes([bytes[pos], bytes[pos + 1]]) == 0x0002,
        };
        if !in_meta {
            break;
        }
        let header = read_header(bytes, pos, meta_encoding)?;
        let value_end = value_end(bytes, &header)?;
        if header.element == 0x0000 && group_length.is_none() && header.length == 4 {
            let value: [u8; 4] = bytes[header.value_start..value_end].try_into().expect("4 bytes");
            group_length = Some(u32::from_le_bytes(value) as u64);
        } else {
            meta_read += (value_end - pos) as u64;
        }
        if header.element == 0x0010 {
            transfer_syntax = String::from_utf8_lossy(&bytes[header.value_start..value_end])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        pos = value_end;
    }
    let dataset = &bytes[pos..];
    match transfer_syntax.as_str() {
        "1.2.840.10008.1.2.1.99" => {
            let ratio_limit = (bytes.len() as u64).saturating_mul(MAX_INFLATE_RATIO);
            let limit = ratio_limit.min(max_inflated);
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(dataset)
                .take(limit.saturating_add(1))
                .read_to_end(&mut inflated)
                .map_err(LengthError::Inflate)?;
            if inflated.len() as u64 > limit {
                return Err(match limit == ratio_limit {
                    true => LengthError::InflateRatio,
                    false => LengthError::InflatedBeyond(limit),
                });
            }
            walk(
                &inflated,
                Encoding {
                    explicit_vr: true,
                    big_endian: false,
                },
            )
        }
        "1.2.840.10008.1.2" => walk(
            dataset,
            Encoding {
                explicit_vr: false,
                big_endian: false,
            },
        ),
        "1.2.840.10008.1.2.2" => walk(
            dataset,
            Encoding {
                explicit_vr: true,
                big_endian: true,
            },
        ),
        // No meta group: the parser guesses implicit little endian, as does this walk.
        "" => walk(
            dataset,
            Encoding {
                explicit_vr: false,
                big_endian: false,
            },
        ),
        _ => walk(
            dataset,
            Encoding {
                explicit_vr: true,
                big_endian: false,
            },
        ),
    }
}

struct Header {
    group: u16,
    element: u16,
    length: u32,
    value_start: usize,
    /// Explicit VR `SQ`.
    is_sequence: bool,
}

fn value_end(bytes: &[u8], header: &Header) -> Result<usize, LengthError> {
    let end = header.value_start as u64 + header.length as u64;
    if end > bytes.len() as u64 {
        return Err(LengthError::Overrun {
            group: header.group,
            element: header.element,
            length: header.length,
            remaining: bytes.len() - header.value_start.min(bytes.len()),
        });
    }
    Ok(end as usize)
}

fn read_header(bytes: &[u8], pos: usize, encoding: Encoding) -> Result<Header, LengthError> {
    let u16_at = |p: usize| {
        let b = [bytes[p], bytes[p + 1]];
        if encoding.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    let u32_at = |p: usize| {
        let b = [bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]];
        if encoding.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let truncated = || LengthError::TruncatedHeader(pos);
    if pos + 8 > bytes.len() {
        return Err(truncated());
    }
    let (group, element) = (u16_at(pos), u16_at(pos + 2));
    // Items and delimiters have no VR in any encoding.
    if group == 0xFFFE || !encoding.explicit_vr {
        let header = Header {
            group,
            element,
            length: u32_at(pos + 4),
            value_start: pos + 8,
            is_sequence: false,
        };
        if group != 0xFFFE {
            check_whole_values(&header, implicit_vr(group, element))?;
        }
        return Ok(header);
    }
    let vr = [bytes[pos + 4], bytes[pos + 5]];
    // The VRs with a 2-byte length; dicom-rs reads any other, an unknown (corrupt) VR included, as UN with a
    // 4-byte length, and the walk must read the same length it will.
    let short_form = matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    );
    let header = if !short_form {
        if pos + 12 > bytes.len() {
            return Err(truncated());
        }
        Header {
            group,
            element,
            length: u32_at(pos + 8),
            value_start: pos + 12,
            is_sequence: &vr == b"SQ",
        }
    } else {
        Header {
            group,
            element,
            length: u16_at(pos + 6) as u32,
            value_start: pos + 8,
            is_sequence: false,
        }
    };
    check_whole_values(&header, vr)?;
    Ok(header)
}

/// The VR dicom-rs gives an implicit-VR element: OW for pixel and overlay data, else the standard
/// dictionary's (UN when it has none).
fn implicit_vr(group: u16, element: u16) -> [u8; 2] {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    if (group, element) == PIXEL_DATA || (group >> 8 == 0x60 && element == 0x3000) {
        return *b"OW";
    }
    let vr = dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(group, element))
        .map(|entry| entry.vr().relaxed())
        .unwrap_or(dicom_core::VR::UN);
    let text = vr.to_string();
    let bytes = text.as_bytes();
    [bytes[0], bytes.get(1).copied().unwrap_or(b' ')]
}

/// Bytes per value of the binary VRs that dicom-rs reads value by value (`len / size` values).
fn value_size(vr: [u8; 2]) -> Option<u32> {
    match &vr {
        b"US" | b"SS" | b"OW" => Some(2),
        b"AT" | b"FL" | b"OF" | b"SL" | b"UL" | b"OL" => Some(4),
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => Some(8),
        _ => None,
    }
}

/// A defined length of such a VR must be a whole number of values.
fn check_whole_values(header: &Header, vr: [u8; 2]) -> Result<(), LengthError> {
    match value_size(vr) {
        Some(size) if header.length != UNDEFINED && !header.length.is_multiple_of(size) => {
            Err(LengthError::Misaligned {
                group: header.group,
                element: header.element,
                vr: String::from_utf8_lossy(&vr).into_owned(),
                length: header.length,
                size,
            })
        }
        _ => Ok(()),
    }
}

/// Walks a dataset: defined lengths are checked and skipped, undefined ones are stepped into, and (explicit
/// VR) sequences with a defined length are walked inside too, where the parser will read their elements.
fn walk(bytes: &[u8], encoding: Encoding) -> Result<(), LengthError> {
    walk_at_depth(bytes, encoding, 0)
}

/// Deepest nesting of defined-length sequences the walk follows; deeper is refused (a hostile file could
/// nest until the stack overflows).
const MAX_SEQUENCE_DEPTH: usize = 64;

fn walk_at_depth(bytes: &[u8], encoding: Encoding, depth: usize) -> Result<(), LengthError> {
    let mut pos = 0;
    // Fewer than 8 bytes left cannot hold an element; the parser reports real truncation itself.
    while pos + 8 <= bytes.len() {
        let header = read_header(bytes, pos, encoding)?;
        if (header.group, header.element) == PIXEL_DATA && header.length == UNDEFINED {
            pos = header.value_start + fragments_len(&bytes[header.value_start..], encoding)?;
            continue;
        }
        if header.length == UNDEFINED {
            pos = header.value_start;
            continue;
        }
        let end = value_end(bytes, &header)?;
        if header.is_sequence {
            walk_items(&bytes[header.value_start..end], encoding, depth + 1)?;
        } else if (header.group, header.element) == ITEM {
            // An item met by the flat walk lies in an undefined-length element other than encapsulated pixel
            // data, which dicom-rs reads as a sequence (whatever its VR): the item holds a dataset.
            if depth >= MAX_SEQUENCE_DEPTH {
                return Err(LengthError::TooDeep);
            }
            walk_at_depth(&bytes[header.value_start..end], encoding, depth + 1)?;
        }
        pos = end;
    }
    Ok(())
}

/// The items of a defined-length sequence value: each defined-length item's elements are walked within
/// the item; an undefined-length item is stepped into by the flat walk.
fn walk_items(bytes: &[u8], encoding: Encoding, depth: usize) -> Result<(), LengthError> {
    if depth > MAX_SEQUENCE_DEPTH {
        return Err(LengthError::TooDeep);
    }
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let header = read_header(bytes, pos, encoding)?;
        if header.length == UNDEFINED {
            return walk_at_depth(&bytes[pos..], encoding, depth);
        }
        let end = value_end(bytes, &header)?;
        if (header.group, header.element) == ITEM {
            walk_at_depth(&bytes[header.value_start..end], encoding, depth)?;
        }
        pos = end;
    }
    Ok(())
}

/// Tag of a sequence item.
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const SEQUENCE_DELIMITER: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

/// Encapsulated pixel data (undefined-length Pixel Data): dicom-rs reads every header there as a tag and a
/// 4-byte length, whatever the tag, until the sequence delimiter. Each declared length is checked as the parser
/// will read it; returns the bytes up to and including the delimiter (or to the end).
fn fragments_len(bytes: &[u8], encoding: Encoding) -> Result<usize, LengthError> {
    let items = Encoding {
        explicit_vr: false,
        ..encoding
    };
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let header = read_header(bytes, pos, items)?;
        if (header.group, header.element) == SEQUENCE_DELIMITER {
            return Ok(header.value_start);
        }
        pos = value_end(bytes, &header)?;
    }
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit_le_file(elements: &[u8]) -> Vec<u8> {
        file_with_syntax(b"1.2.840.10008.1.2.1\0", elements)
    }

    /// Preamble, `DICM`, a meta group holding only the transfer syntax `ts`, then `elements`.
    fn file_with_syntax(ts: &[u8], elements: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        bytes.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        bytes.extend_from_slice(ts);
        bytes.extend_from_slice(elements);
        bytes
    }

    #[test]
    fn accepts_consistent_lengths_and_undefined_sequences() {
        let mut elements = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0, b'D', b'o', b'e', b' '];
        // (0008,1140) SQ, undefined length, one undefined-length item, item and sequence delimiters.
        elements.extend_from_slice(&[0x08, 0x00, 0x40, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        elements.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        elements.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        elements.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        check_lengths(&explicit_le_file(&elements)).unwrap();
    }

    #[test]
    fn an_unknown_vr_has_a_four_byte_length_as_dicom_rs_reads_it() {
        // (0010,0022) with its VR bytes corrupted to 0xFF 'S': dicom-rs takes it as UN, skips two reserved
        // bytes and reads 0x54584554 (1.4 GB) as the length — from a file found to make it allocate 1.4 GB.
        let mut element = vec![0x10, 0x00, 0x22, 0x00, 0xFF, b'S', 0x04, 0x00];
        element.extend_from_slice(b"TEXT");
        element.extend_from_slice(&[0u8; 64]);
        let err = check_lengths(&explicit_le_file(&element)).unwrap_err().to_string();
        assert!(err.contains("claims 1415071060 bytes"), "{err}");
    }

    #[test]
    fn elements_inside_defined_length_sequences_are_checked() {
        // (0010,1002) SQ of 28 bytes holding one 20-byte item whose element claims 1.4 GB: the parser reads
        // into the sequence, so the walk must too (found in a mutated CT_small.dcm that made info hold 1.5 GB).
        let nest = |content: Vec<u8>| {
            let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
            item.extend_from_slice(&(content.len() as u32).to_le_bytes());
            item.extend_from_slice(&content);
            let mut sq = vec![0x10, 0x00, 0x02, 0x10, b'S', b'Q', 0, 0];
            sq.extend_from_slice(&(item.len() as u32).to_le_bytes());
            sq.extend_from_slice(&item);
            sq
        };
        let mut corrupt = vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, b'S', 0x04, 0x00];
        corrupt.extend_from_slice(b"TEXT");
        corrupt.extend_from_slice(&[0u8; 8]);
        let err = check_lengths(&explicit_le_file(&nest(corrupt)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("element (FF10,FFFF) claims 1415071060 bytes"), "{err}");

        // A consistent nested sequence passes; nesting deeper than the limit is refused.
        let mut ok_inner = vec![0x10, 0x00, 0x20, 0x00, b'L', b'O', 0x04, 0x00];
        ok_inner.extend_from_slice(b"ABCD");
        check_lengths(&explicit_le_file(&nest(ok_inner.clone()))).unwrap();
        let deep = (0..=MAX_SEQUENCE_DEPTH).fold(ok_inner, |content, _| nest(content));
        let err = check_lengths(&explicit_le_file(&deep)).unwrap_err().to_string();
        assert!(err.contains("nested more than 64 deep"), "{err}");
    }

    #[test]
    fn rejects_an_element_claiming_gigabytes() {
        // (7FE0,0010) OW claiming 0xF0000000 bytes in a tiny file.
        let elements = [
            0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 0x00, 0x00, 0x00, 0xF0, 1, 2, 3, 4,
        ];
        let err = check_lengths(&explicit_le_file(&elements)).unwrap_err().to_string();
        assert!(err.contains("(7FE0,0010) claims 4026531840 bytes"), "{err}");
    }

    #[test]
    fn rejects_an_oversized_item_inside_encapsulated_pixel_data() {
        let mut elements = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        elements.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0x00, 0x00, 0x00, 0x80]);
        let err = check_lengths(&explicit_le_file(&elements)).unwrap_err().to_string();
        assert!(err.contains("(FFFE,E000) claims 2147483648 bytes"), "{err}");
    }

    #[test]
    fn fragments_of_encapsulated_pixel_data_are_read_as_the_parser_reads_them() {
        // Undefined-length Pixel Data whose first "item" tag is corrupt: dicom-rs reads tag + 4-byte length
        // (here 1 GB), not an explicit VR.
        let mut element = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        element.extend_from_slice(&[0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x00, 0x00, 0x40]);
        element.extend_from_slice(&[0u8; 16]);
        let err = check_lengths(&explicit_le_file(&element)).unwrap_err().to_string();
        assert!(err.contains("(4FFF,51FF) claims 1073741824 bytes"), "{err}");
        // The same with an item tag and a fitting length passes, and the walk goes on after the delimiter.
        let mut element = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        element.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4]);
        element.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        element.extend_from_slice(&[0x08, 0x00, 0x20, 0x00, b'D', b'A', 0xFF, 0x7F]);
        let err = check_lengths(&explicit_le_file(&element)).unwrap_err().to_string();
        assert!(err.contains("(0008,0020) claims 32767 bytes"), "{err}");
    }

    #[test]
    fn items_of_undefined_length_elements_hold_datasets_that_are_checked() {
        // An undefined-length OW that is not Pixel Data (a corrupted tag): dicom-rs reads it as a sequence, so
        // its defined-length item holds elements, one of which claims 1 GB.
        let mut element = vec![0x10, 0x30, 0xE0, 0x00, b'O', b'W', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        element.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 20, 0, 0, 0]);
        element.extend_from_slice(&[0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0, 0, 0, 0, 0, 0x40]);
        element.extend_from_slice(&[0u8; 8]);
        element.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let err = check_lengths(&explicit_le_file(&element)).unwrap_err().to_string();
        assert!(err.contains("(4FFF,51FF) claims 1073741824 bytes"), "{err}");
    }

    #[test]
    fn binary_values_must_be_whole() {
        // AT with 10 bytes: dicom-rs reads two tags (8 bytes) and takes the 2 left for the next header.
        let element = [
            0x18, 0x00, 0x80, 0x00, b'A', b'T', 10, 0, b'4', b'0', b'0', b'0', b'.', b'0', b'0', b'0', b'0', b' ',
        ];
        let err = check_lengths(&explicit_le_file(&element)).unwrap_err().to_string();
        assert!(
            err.contains("(0018,0080) of VR AT has 10 bytes, not a multiple of 4"),
            "{err}"
        );
        let element = [0x28, 0x00, 0x10, 0x00, b'U', b'S', 2, 0, 64, 0];
        check_lengths(&explicit_le_file(&element)).unwrap();
    }

    #[test]
    fn implicit_vr_values_are_checked_by_the_dictionary_vr() {
        // Implicit VR little endian; (001A,0000) is a group length (UL) of 6 bytes: dicom-rs reads one UL and
        // takes the 2 left for the next header.
        let bytes = file_with_syntax(
            b"1.2.840.10008.1.2\0",
            &[0x1A, 0x00, 0x00, 0x00, 6, 0, 0, 0, 1, 2, 3, 4, 5, 6],
        );
        let err = check_lengths(&bytes).unwrap_err().to_string();
        assert!(
            err.contains("(001A,0000) of VR UL has 6 bytes, not a multiple of 4"),
            "{err}"
        );
    }
}
