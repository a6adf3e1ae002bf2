//! Checks of JPEG 2000 pixel data before dicom-rs decodes it. Its adapter writes every decoded component
//! sample into a buffer sized by the DICOM attributes (rows, columns, samples per pixel), trusting the
//! codestream to agree: a codestream whose image or component count is larger slices past the buffer's end
//! (a panic, found by fuzzing). Each codestream's SIZ marker segment is read here and must describe the
//! image the attributes declare.

/// Start of codestream followed by the SIZ marker, as every JPEG 2000 codestream begins.
const SOC_SIZ: [u8; 4] = [0xFF, 0x4F, 0xFF, 0x51];

/// What the DICOM attributes declare for each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct J2kLayout {
    /// Rows.
    pub rows: u64,
    /// Columns.
    pub columns: u64,
    /// Samples per pixel.
    pub samples: u64,
}

/// Why a JPEG 2000 codestream is refused.
#[derive(Debug, thiserror::Error)]
pub enum J2kError {
    /// A SIZ marker segment cut off by the end of the fragment.
    #[error("JPEG 2000 codestream in fragment {0} ends inside its SIZ marker segment")]
    Truncated(usize),
    /// A codestream whose image differs from the attributes'.
    #[error(
        "JPEG 2000 codestream in fragment {fragment} holds a {width}x{height} image with {components} components; the DICOM attributes declare {columns}x{rows} with {samples}"
    )]
    Mismatch {
        /// Fragment index.
        fragment: usize,
        /// Codestream image width.
        width: u64,
        /// Codestream image height.
        height: u64,
        /// Codestream components.
        components: u64,
        /// Declared columns.
        columns: u64,
        /// Declared rows.
        rows: u64,
        /// Declared samples per pixel.
        samples: u64,
    },
}

/// Checks the SIZ segment of every fragment that starts a codestream (other fragments continue one, and
/// a JP2-boxed stream is left to the decoder).
pub fn check_j2k_fragments(fragments: &[Vec<u8>], layout: J2kLayout) -> Result<(), J2kError> {
    for (index, fragment) in fragments.iter().enumerate() {
        if fragment.starts_with(&SOC_SIZ) {
            check_siz(index, fragment, layout)?;
        }
    }
    Ok(())
}

fn check_siz(index: usize, fragment: &[u8], layout: J2kLayout) -> Result<(), J2kError> {
    // SOC (2), SIZ (2), Lsiz (2), Rsiz (2), Xsiz, Ysiz, XOsiz, YOsiz (4 each), tile sizes and offsets
    // (4 x 4), Csiz (2).
    let siz = fragment.get(4..42).ok_or(J2kError::Truncated(index))?;
    let u32_at = |at: usize| u64::from(u32::from_be_bytes(siz[at..at + 4].try_into().expect("4 bytes")));
    let width = u32_at(4).saturating_sub(u32_at(12));
    let height = u32_at(8).saturating_sub(u32_at(16));
    let components = u64::from(u16::from_be_bytes([siz[36], siz[37]]));
    if (width, height, components) != (layout.columns, layout.rows, layout.samples) {
        return Err(J2kError::Mismatch {
            fragment: index,
            width,
            height,
            components,
            columns: layout.columns,
            rows: layout.rows,
            samples: layout.samples,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A codestream head: SOC, SIZ for a `width` x `height` image with `components` components.
    fn codestream(width: u32, height: u32, components: u16) -> Vec<u8> {
        let mut bytes = SOC_SIZ.to_vec();
        bytes.extend_from_slice(&(38 + 3 * components).to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        for v in [width, height, 0, 0, width, height, 0, 0] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        bytes.extend_from_slice(&components.to_be_bytes());
        bytes.extend_from_slice(&[7, 1, 1]);
        bytes
    }

    const LAYOUT: J2kLayout = J2kLayout {
        rows: 64,
        columns: 64,
        samples: 1,
    };

    #[test]
    fn a_codestream_of_the_declared_image_passes() {
        check_j2k_fragments(&[codestream(64, 64, 1), vec![1, 2, 3]], LAYOUT).unwrap();
    }

    #[test]
    fn larger_images_more_components_and_cut_segments_are_refused() {
        let err = check_j2k_fragments(&[codestream(65, 64, 1)], LAYOUT).unwrap_err();
        assert!(err.to_string().contains("65x64 image with 1 components"), "{err}");
        let err = check_j2k_fragments(&[codestream(64, 64, 3)], LAYOUT).unwrap_err();
        assert!(err.to_string().contains("with 3 components"), "{err}");
        let err = check_j2k_fragments(&[codestream(64, 64, 1)[..20].to_vec()], LAYOUT).unwrap_err();
        assert!(err.to_string().contains("ends inside its SIZ"), "{err}");
    }
}
