//! Response bodies: the mask as a file on the volume's grid, and MONAI Label's multipart reply (a
//! `params` JSON part and the file part) that its clients parse.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use medico_io::nifti_io::write_mask_nifti;
use medico_io::nrrd_io::mask_nrrd_bytes;
use medico_io::volume::Volume;
use ndarray::Array3;

use crate::error::ApiError;

/// The file types a mask can be returned as.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaskFormat {
    /// Gzipped NIfTI (`.nii.gz`), with the uploaded volume's header.
    NiftiGz,
    /// NIfTI (`.nii`).
    Nifti,
    /// Gzipped NRRD (`.nrrd`), LPS space, as 3D Slicer asks.
    Nrrd,
}

impl MaskFormat {
    /// From the request's `result_extension` (default `.nii.gz`).
    pub fn from_extension(extension: Option<&str>) -> Result<Self, ApiError> {
        match extension.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some(".nii.gz") | Some("nii.gz") => Ok(Self::NiftiGz),
            Some(".nii") | Some("nii") => Ok(Self::Nifti),
            Some(".nrrd") | Some("nrrd") => Ok(Self::Nrrd),
            Some(other) => Err(ApiError::unprocessable(format!(
                "result_extension '{other}' is not written; use .nii.gz, .nii or .nrrd"
            ))),
        }
    }

    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::NiftiGz => ".nii.gz",
            Self::Nifti => ".nii",
            Self::Nrrd => ".nrrd",
        }
    }

    /// The file's bytes for a mask `[i, j, k]` on `volume`'s grid.
    pub fn encode(self, volume: &Volume, mask: &Array3<u8>) -> Result<Vec<u8>, ApiError> {
        let failed = |e: String| ApiError::internal(format!("writing the mask failed: {e}"));
        match self {
            Self::Nrrd => mask_nrrd_bytes(volume, mask).map_err(|e| failed(e.to_string())),
            Self::NiftiGz | Self::Nifti => {
                let dir = tempfile::tempdir().map_err(|e| failed(e.to_string()))?;
                let path = dir.path().join(format!("mask{}", self.extension()));
                write_mask_nifti(&path, volume, mask).map_err(|e| failed(medico_io::chain_text(&e)))?;
                std::fs::read(&path).map_err(|e| failed(e.to_string()))
            }
        }
    }
}

/// The DICOM objects a mask is returned as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DicomKind {
    /// A DICOM SEG (`output=dicom_seg`).
    Seg,
    /// An RT Structure Set with one ROI (`output=rtstruct`).
    RtStruct,
}

impl DicomKind {
    /// The `output` value that asks for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Seg => "dicom_seg",
            Self::RtStruct => "rtstruct",
        }
    }
}

/// A DICOM SEG or RT Structure Set of `mask` referencing the session's DICOM series; 422 when the session
/// holds no DICOM.
pub fn dicom(
    kind: DicomKind,
    session: &crate::sessions::SessionView,
    volume: &Volume,
    mask: &Array3<u8>,
    segment: &medico_io::dicom_seg::SegmentDescription,
) -> Result<Vec<u8>, ApiError> {
    let output = kind.name();
    if !medico_io::input::is_dicom_scan(&session.image) {
        return Err(ApiError::unprocessable(format!(
            "output={output}: this session's image is not DICOM (the result references its source series)"
        )));
    }
    let source = medico_io::dicom_seg::SourceSeries::read(&session.image)
        .map_err(|e| ApiError::unprocessable(format!("output={output}: {}", medico_io::chain_text(&e))))?;
    let dir = tempfile::tempdir().map_err(|e| ApiError::internal(e.to_string()))?;
    let path = dir.path().join("result.dcm");
    let written = match kind {
        DicomKind::Seg => medico_io::dicom_seg::write_dicom_seg(&path, volume, &source, mask, segment),
        DicomKind::RtStruct => {
            let roi = medico_io::rtstruct::RoiMask {
                name: segment.label.clone(),
                color: medico_io::rtstruct::ROI_COLORS[0],
                mask,
            };
            let generation = medico_io::rtstruct::Generation {
                algorithm_name: segment.algorithm_name.clone(),
            };
            medico_io::rtstruct::write_rtstruct(&path, volume, &source, &[roi], &generation)
        }
    };
    written.map_err(|e| {
        ApiError::internal(format!(
            "writing the {output} result failed: {}",
            medico_io::chain_text(&e)
        ))
    })?;
    std::fs::read(&path).map_err(|e| ApiError::internal(e.to_string()))
}

/// A file download.
pub fn file(bytes: Vec<u8>, name: &str, content_type: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response()
}

/// MONAI Label's reply to an inference: `multipart/form-data` with a `params` JSON part and an `image`
/// part carrying the file (its file name is where the clients save it).
pub fn multipart(params: &serde_json::Value, bytes: &[u8], name: &str) -> Response {
    let boundary = format!("medico-{:032x}", rand::random::<u128>());
    let mut body = Vec::with_capacity(bytes.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\nContent-Type: application/json\r\n\r\n{params}\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (
        [(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_extensions_map_to_formats() {
        assert_eq!(MaskFormat::from_extension(None).unwrap(), MaskFormat::NiftiGz);
        assert_eq!(MaskFormat::from_extension(Some(".nrrd")).unwrap(), MaskFormat::Nrrd);
        assert_eq!(MaskFormat::from_extension(Some(".NII")).unwrap(), MaskFormat::Nifti);
        assert!(MaskFormat::from_extension(Some(".seg.nrrd"))
            .unwrap_err()
            .detail
            .contains(".seg.nrrd"));
    }
}
