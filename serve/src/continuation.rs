//! A segmentation to continue from, sent with an inference request as MONAI Label's `label` file: a mask or
//! label map (NIfTI, NRRD) on the volume's grid, or an RT Structure Set of the session's series. Its mask on
//! the prompted slice starts the interaction (its box, and the mask as the previous round) and the
//! request's clicks correct it, as `segment --from` does. Read within the server's limits; errors name the
//! client's file, never a server path.

use std::path::Path;

use axum::http::StatusCode;
use medico_io::input::ReadLimits;
use medico_io::label_source::{read_labels_for_within, roi_number};
use medico_io::volume::Volume;

use crate::error::ApiError;
use crate::prompts::SLICE_AXIS;

/// The labels to continue from and the value that is the segment.
pub struct Continuation {
    labels: Volume,
    /// The value of the segment's voxels; `None`: every non-zero voxel.
    value: Option<f32>,
}

impl Continuation {
    /// Reads `file` onto `volume`'s grid (`image`: the session's files, to match a structure set's contours
    /// by the images they reference). For a structure set, `label` names the ROI to continue when it holds
    /// one by that name; otherwise every non-zero voxel is the segment.
    pub fn read(
        file: &Path,
        volume: &Volume,
        image: Option<&Path>,
        limits: &ReadLimits,
        label: Option<&str>,
    ) -> Result<Self, ApiError> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hidden = |e: medico_io::IoError| {
            let text = medico_io::chain_text(&e).replace(&file.display().to_string(), &format!("label file {name}"));
            let text = match image {
                Some(image) => text.replace(&image.display().to_string(), "the session's image"),
                None => text,
            };
            match e {
                medico_io::IoError::TooLarge { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, text),
                _ => ApiError::unprocessable(text),
            }
        };
        let labels = read_labels_for_within(file, volume, image.unwrap_or(Path::new("")), limits).map_err(hidden)?;
        // A structure set's ROI named by the label (any other file has no ROI names: every non-zero voxel).
        let value = label.and_then(|roi| roi_number(file, roi).ok()).map(|n| n as f32);
        Ok(Self { labels, value })
    }

    /// The segment's mask on slice `index` (`(rows, columns)` row-major); `None` where it has no voxel.
    pub fn slice_mask(&self, index: usize) -> Option<Vec<bool>> {
        let (values, _) = self.labels.slice(SLICE_AXIS, index);
        let mask: Vec<bool> = values
            .iter()
            .map(|&v| self.value.map_or(v != 0.0, |w| v == w))
            .collect();
        mask.contains(&true).then_some(mask)
    }
}
