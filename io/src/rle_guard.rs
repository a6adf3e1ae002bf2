//! Checks of RLE Lossless pixel data (DICOM PS3.5 Annex G) before dicom-rs decodes it. Its decoder trusts
//! the stream: a fragment header claiming more segments than the fragment holds slices out of bounds (or
//! allocates up to 16 GB for a count read from four bytes), and a segment that decodes to fewer bytes than
//! a frame plane indexes past its end — both panics, found by mutating `emri_small_RLE.dcm`. Each fragment
//! (one per frame) is checked here so such files get a clean error instead.

/// Size of the RLE header of each fragment: the segment count and 15 offsets, little-endian u32.
const HEADER_BYTES: usize = 64;
/// Most segments a fragment may have.
const MAX_SEGMENTS: usize = 15;

/// Why RLE pixel data is refused.
#[derive(Debug, thiserror::Error)]
pub enum RleError {
    /// The image needs a segment count RLE cannot hold.
    #[error("RLE pixel data needs {0} segments per frame; at most {MAX_SEGMENTS} exist")]
    SegmentsNeeded(usize),
    /// A fragment whose header is inconsistent.
    #[error("RLE fragment {frame} is corrupt: {problem}")]
    Header {
        /// Frame index.
        frame: usize,
        /// What is wrong with its header.
        problem: HeaderProblem,
    },
    /// A segment that decodes to less than a frame plane.
    #[error("RLE fragment {frame}, segment {segment} decodes to {decoded} bytes, a frame needs {plane}")]
    ShortSegment {
        /// Frame index.
        frame: usize,
        /// Segment index.
        segment: usize,
        /// Bytes it decodes to.
        decoded: usize,
        /// Bytes a plane needs.
        plane: usize,
    },
}

/// What is wrong with a fragment's RLE header.
#[derive(Debug, thiserror::Error)]
pub enum HeaderProblem {
    /// The fragment cannot hold the header.
    #[error("{0} bytes, shorter than the 64-byte RLE header")]
    Short(usize),
    /// The segment count differs from the image's.
    #[error("header names {found} segments, the image needs {needed}")]
    SegmentCount {
        /// Count in the header.
        found: usize,
        /// Count the image needs.
        needed: usize,
    },
    /// A segment offset outside the fragment or out of order.
    #[error("segment {segment} spans bytes {start}..{end} of a {len}-byte fragment")]
    Span {
        /// Segment index.
        segment: usize,
        /// Its start.
        start: usize,
        /// Its end.
        end: usize,
        /// Fragment length.
        len: usize,
    },
}

/// What one frame of the image needs.
#[derive(Debug, Clone, Copy)]
pub struct RleLayout {
    /// Rows x columns: the bytes each segment must decode to.
    pub plane: usize,
    /// Segments per fragment: samples per pixel x bytes per sample.
    pub segments: usize,
}

/// Checks every fragment's header (segment count as the layout needs, offsets ascending within the
/// fragment) and that every segment's PackBits stream decodes to at least a full plane.
pub fn check_rle_fragments(fragments: &[Vec<u8>], layout: RleLayout) -> Result<(), RleError> {
    if layout.segments == 0 || layout.segments > MAX_SEGMENTS {
        return Err(RleError::SegmentsNeeded(layout.segments));
    }
    for (frame, fragment) in fragments.iter().enumerate() {
        let offsets =
            segment_offsets(fragment, layout.segments).map_err(|problem| RleError::Header { frame, problem })?;
        for (s, range) in offsets.iter().enumerate() {
            let decoded = packbits_decoded_len(&fragment[range.clone()], layout.plane);
            if decoded < layout.plane {
                return Err(RleError::ShortSegment {
                    frame,
                    segment: s,
                    decoded,
                    plane: layout.plane,
                });
            }
        }
    }
    Ok(())
}

/// The byte ranges of a fragment's segments, from its header.
fn segment_offsets(fragment: &[u8], segments: usize) -> Result<Vec<std::ops::Range<usize>>, HeaderProblem> {
    if fragment.len() < HEADER_BYTES {
        return Err(HeaderProblem::Short(fragment.len()));
    }
    let word = |i: usize| u32::from_le_bytes(fragment[4 * i..4 * i + 4].try_into().expect("4 bytes")) as usize;
    let count = word(0);
    if count != segments {
        return Err(HeaderProblem::SegmentCount {
            found: count,
            needed: segments,
        });
    }
    let starts: Vec<usize> = (1..=count).map(word).collect();
    let mut ranges = Vec::with_capacity(count);
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(fragment.len());
        if start < HEADER_BYTES || start > end || end > fragment.len() {
            return Err(HeaderProblem::Span {
                segment: i,
                start,
                end,
                len: fragment.len(),
            });
        }
        ranges.push(start..end);
    }
    Ok(ranges)
}

/// Bytes a PackBits stream decodes to, counting no further than `enough`; a run cut off by the end of
/// the stream counts only what is there.
fn packbits_decoded_len(segment: &[u8], enough: usize) -> usize {
    let (mut i, mut out) = (0usize, 0usize);
    while i < segment.len() && out < enough {
        let header = segment[i] as i8;
        i += 1;
        match header {
            0..=127 => {
                let literal = (header as usize + 1).min(segment.len() - i);
                out += literal;
                i += literal;
            }
            -128 => {}
            _ if i < segment.len() => {
                out += 1 + header.unsigned_abs() as usize;
                i += 1;
            }
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fragment with one segment holding `stream`.
    fn fragment(count: u32, stream: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_BYTES];
        out[0..4].copy_from_slice(&count.to_le_bytes());
        out[4..8].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        out.extend_from_slice(stream);
        out
    }

    #[test]
    fn packbits_lengths_count_literals_and_runs() {
        // Literal of 3, run of 4 (header -3), no-op (-128), literal of 1.
        let stream = [2u8, 1, 2, 3, 0xFD, 9, 0x80, 0, 7];
        assert_eq!(packbits_decoded_len(&stream, usize::MAX), 8);
        assert_eq!(
            packbits_decoded_len(&stream[..2], usize::MAX),
            1,
            "a cut literal counts what is there"
        );
        assert_eq!(
            packbits_decoded_len(&[0xFD], usize::MAX),
            0,
            "a run without its byte counts nothing"
        );
    }

    #[test]
    fn good_fragments_pass_and_each_defect_is_named() {
        let layout = RleLayout { plane: 8, segments: 1 };
        let stream = [2u8, 1, 2, 3, 0xFD, 9, 0x80, 0, 7];
        check_rle_fragments(&[fragment(1, &stream)], layout).unwrap();
        let short = check_rle_fragments(&[fragment(1, &stream[..4])], layout)
            .unwrap_err()
            .to_string();
        assert!(short.contains("decodes to 3 bytes"), "{short}");
        let count = check_rle_fragments(&[fragment(4_000_000_000, &stream)], layout)
            .unwrap_err()
            .to_string();
        assert!(count.contains("names 4000000000 segments"), "{count}");
        let tiny = check_rle_fragments(&[vec![1, 0, 0, 0]], layout)
            .unwrap_err()
            .to_string();
        assert!(tiny.contains("shorter than the 64-byte RLE header"), "{tiny}");
        let mut beyond = fragment(1, &stream);
        beyond[4..8].copy_from_slice(&1000u32.to_le_bytes());
        let beyond = check_rle_fragments(&[beyond], layout).unwrap_err().to_string();
        assert!(beyond.contains("spans bytes 1000.."), "{beyond}");
    }
}
