//! The `params` of `POST /infer/{model}` as MONAI Label's clients send them, turned into one slice's
//! prompts. Coordinates are voxel indices `[i, j, k]` of the uploaded volume (the clients convert from RAS
//! with the volume's own IJK matrix); slices are taken along the third array axis `k`, as MONAI Label's
//! 2D deepgrow and SAM models do. On a slice, x runs along `i` and y along `j` (medico's slice convention,
//! the same as `medico-cli segment --axis 2`).

use std::collections::BTreeMap;

use medico_models::prompt::{BoxPrompt, Point};
use serde::Deserialize;

use crate::error::ApiError;

/// The slicing axis of every request.
pub const SLICE_AXIS: usize = 2;

/// The request parameters medico reads; others (`client_id`, `label`, `reset_state`, ...) are ignored.
#[derive(Deserialize, Default, Debug)]
pub struct InferParams {
    /// Positive clicks, `[i, j, k]` voxel indices.
    #[serde(default)]
    pub foreground: Vec<Vec<f64>>,
    /// Negative clicks, `[i, j, k]`.
    #[serde(default)]
    pub background: Vec<Vec<f64>>,
    /// medico's extension: every click in the order the user gave them, `[i, j, k, label]` (label 1
    /// positive, 0 negative), instead of `foreground`/`background` (whose order across the two lists is
    /// lost). With a model that feeds each round's mask back, the order is the corrections' order.
    #[serde(default)]
    pub clicks: Vec<Vec<f64>>,
    /// A box as 3D Slicer's MONAI Label module sends it: `[i0, i1, j0, j1, k0, k1]`, inclusive voxel
    /// indices (each pair in either order).
    #[serde(default)]
    pub roi: Vec<f64>,
    /// The slice `k` to segment (2D clients send it; otherwise it is the clicks' or the box's).
    pub slice: Option<f64>,
    /// The result's file type: `.nii.gz` (default), `.nii` or `.nrrd`.
    pub result_extension: Option<String>,
    /// The result's voxel type: only `uint8` is written (it is what the clients ask for).
    pub result_dtype: Option<String>,
    /// The segment's name, echoed in `label_names`.
    pub label: Option<String>,
}

/// One slice's prompts, in its pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct SlicePrompts {
    /// Slice index along [`SLICE_AXIS`].
    pub slice: usize,
    /// Clicks.
    pub points: Vec<Point>,
    /// The box, corners exclusive at the far end.
    pub bbox: Option<BoxPrompt>,
}

/// The prompts of a request by slice, for 2D models one slice; for 3D models also the range the ROI limits
/// propagation to.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumePrompts {
    /// Prompted slices, in order.
    pub annotations: Vec<SlicePrompts>,
    /// Lowest and highest slice propagation may reach (the ROI's `k` range).
    pub limits: Option<(usize, usize)>,
}

impl VolumePrompts {
    /// One slice's prompts.
    pub fn one_slice(prompts: SlicePrompts) -> Self {
        Self {
            annotations: vec![prompts],
            limits: None,
        }
    }
}

impl InferParams {
    /// Parses the `params` form field (absent or empty: no parameters).
    pub fn parse(text: Option<&str>) -> Result<Self, ApiError> {
        match text.map(str::trim) {
            None | Some("") => Ok(Self::default()),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("params: not the JSON object expected: {e}"))),
        }
    }

    /// Refuses more than `max_clicks` clicks (foreground and background together) in one request: each
    /// click costs the decoder memory and time, quadratically in their number.
    pub fn check_clicks(&self, max_clicks: usize) -> Result<(), ApiError> {
        let clicks = self.foreground.len() + self.background.len() + self.clicks.len();
        if clicks > max_clicks {
            return Err(ApiError::unprocessable(format!(
                "{clicks} clicks in one request; this server takes at most {max_clicks}"
            )));
        }
        Ok(())
    }

    /// Every click as a voxel and its sign, in the user's order: `clicks` when given, else the foreground
    /// clicks then the background ones (MONAI Label's lists).
    fn ordered_clicks(&self, shape: [usize; 3]) -> Result<Vec<([usize; 3], bool)>, ApiError> {
        if self.clicks.is_empty() {
            let foreground = voxels("foreground", &self.foreground, shape)?;
            let background = voxels("background", &self.background, shape)?;
            let signed = |clicks: Vec<[usize; 3]>, positive| clicks.into_iter().map(move |v| (v, positive));
            return Ok(signed(foreground, true).chain(signed(background, false)).collect());
        }
        if !self.foreground.is_empty() || !self.background.is_empty() {
            return Err(ApiError::unprocessable(
                "give the clicks either as foreground/background or as clicks, not both",
            ));
        }
        self.clicks
            .iter()
            .map(|c| {
                let label = match c.get(3) {
                    Some(&l) if c.len() == 4 && (l == 0.0 || l == 1.0) => l == 1.0,
                    _ => {
                        return Err(ApiError::unprocessable(format!(
                            "clicks: {c:?} is not [i, j, k, label] with label 1 (positive) or 0 (negative)"
                        )))
                    }
                };
                Ok((voxels("clicks", &[c[..3].to_vec()], shape)?[0], label))
            })
            .collect()
    }

    /// The prompts on one slice of a volume of `shape` (`[ni, nj, nk]`), checked against it.
    pub fn slice_prompts(&self, shape: [usize; 3]) -> Result<SlicePrompts, ApiError> {
        let clicks = self.ordered_clicks(shape)?;
        let roi = self.roi_box(shape)?;
        let slice = self.choose_slice(&clicks, roi.as_ref(), shape)?;
        let mut points = Vec::new();
        for &(v, positive) in &clicks {
            if v[2] != slice {
                return Err(ApiError::unprocessable(format!(
                    "{} click [{}, {}, {}] is on slice {}; this request segments slice {slice} (2D model: \
                     send the clicks of one slice)",
                    if positive { "foreground" } else { "background" },
                    v[0],
                    v[1],
                    v[2],
                    v[2]
                )));
            }
            points.push(Point {
                x: v[0] as f64,
                y: v[1] as f64,
                positive,
            });
        }
        let bbox = roi.map(|r| r.to_box());
        if points.is_empty() && bbox.is_none() {
            return Err(ApiError::unprocessable(
                "no prompt: give foreground/background clicks or an roi box",
            ));
        }
        Ok(SlicePrompts { slice, points, bbox })
    }

    /// The prompts of a 3D request: the clicks grouped by their slice, the ROI's box on the middle of its
    /// `k` range (which then bounds propagation, unless the ROI is one slice thick); `slice` is not used.
    pub fn volume_prompts(&self, shape: [usize; 3]) -> Result<VolumePrompts, ApiError> {
        let clicks = self.ordered_clicks(shape)?;
        let roi = self.roi_box(shape)?;
        let mut by_slice: BTreeMap<usize, SlicePrompts> = BTreeMap::new();
        for (v, positive) in clicks {
            slice_entry(&mut by_slice, v[2]).points.push(Point {
                x: v[0] as f64,
                y: v[1] as f64,
                positive,
            });
        }
        // A box drawn on one slice (k0 == k1, as the web annotator sends it) leaves the walk free; a 3D ROI
        // (Slicer's) bounds it to its slices.
        let limits = roi.as_ref().filter(|r| r.lo[2] < r.hi[2]).map(|r| (r.lo[2], r.hi[2]));
        if let Some(r) = &roi {
            slice_entry(&mut by_slice, r.lo[2] + (r.hi[2] - r.lo[2]) / 2).bbox = Some(r.to_box());
        }
        let annotations: Vec<SlicePrompts> = by_slice.into_values().collect();
        if annotations.is_empty() {
            return Err(ApiError::unprocessable(
                "no prompt: give foreground/background clicks or an roi box",
            ));
        }
        Ok(VolumePrompts { annotations, limits })
    }

    /// The box of `roi`, ordered and checked.
    fn roi_box(&self, shape: [usize; 3]) -> Result<Option<VoxelBox>, ApiError> {
        if self.roi.is_empty() {
            return Ok(None);
        }
        if self.roi.len() != 6 {
            return Err(ApiError::unprocessable(format!(
                "roi: {} numbers; expected 6, [i0, i1, j0, j1, k0, k1] (3D Slicer's layout)",
                self.roi.len()
            )));
        }
        let mut lo = [0; 3];
        let mut hi = [0; 3];
        for axis in 0..3 {
            let a = index("roi", self.roi[2 * axis], axis, shape)?;
            let b = index("roi", self.roi[2 * axis + 1], axis, shape)?;
            lo[axis] = a.min(b);
            hi[axis] = a.max(b);
        }
        Ok(Some(VoxelBox { lo, hi }))
    }

    /// `slice` when given, else the clicks' slice, else the middle of the box's slices (as MONAI Label).
    fn choose_slice(
        &self,
        clicks: &[([usize; 3], bool)],
        roi: Option<&VoxelBox>,
        shape: [usize; 3],
    ) -> Result<usize, ApiError> {
        if let Some(s) = self.slice {
            return index("slice", s, SLICE_AXIS, shape);
        }
        if let Some((first, _)) = clicks.first() {
            return Ok(first[2]);
        }
        match roi {
            Some(r) => Ok(r.lo[2] + (r.hi[2] - r.lo[2]) / 2),
            None => Err(ApiError::unprocessable(
                "no prompt: give foreground/background clicks or an roi box",
            )),
        }
    }
}

/// The prompts of `slice`, created empty when absent.
fn slice_entry(by_slice: &mut BTreeMap<usize, SlicePrompts>, slice: usize) -> &mut SlicePrompts {
    by_slice.entry(slice).or_insert(SlicePrompts {
        slice,
        points: Vec::new(),
        bbox: None,
    })
}

/// An inclusive voxel box.
struct VoxelBox {
    lo: [usize; 3],
    hi: [usize; 3],
}

impl VoxelBox {
    /// The box on a slice along [`SLICE_AXIS`], far corner exclusive.
    fn to_box(&self) -> BoxPrompt {
        BoxPrompt {
            x0: self.lo[0] as f64,
            y0: self.lo[1] as f64,
            x1: (self.hi[0] + 1) as f64,
            y1: (self.hi[1] + 1) as f64,
        }
    }
}

/// Clicks as voxel indices inside the volume.
fn voxels(what: &str, clicks: &[Vec<f64>], shape: [usize; 3]) -> Result<Vec<[usize; 3]>, ApiError> {
    clicks
        .iter()
        .map(|c| {
            if c.len() != 3 {
                return Err(ApiError::unprocessable(format!(
                    "{what}: a click has {} coordinates; expected [i, j, k]",
                    c.len()
                )));
            }
            let mut v = [0; 3];
            for axis in 0..3 {
                v[axis] = index(what, c[axis], axis, shape).map_err(|_| {
                    ApiError::unprocessable(format!(
                        "{what}: click [{}, {}, {}] lies outside the {}x{}x{} volume",
                        c[0], c[1], c[2], shape[0], shape[1], shape[2]
                    ))
                })?;
            }
            Ok(v)
        })
        .collect()
}

/// A coordinate rounded to a voxel index inside `shape` along `axis`.
fn index(what: &str, value: f64, axis: usize, shape: [usize; 3]) -> Result<usize, ApiError> {
    let rounded = value.round();
    if !rounded.is_finite() || rounded < 0.0 || rounded >= shape[axis] as f64 {
        return Err(ApiError::unprocessable(format!(
            "{what}: {value} is outside the volume along axis {axis} (0..{})",
            shape[axis]
        )));
    }
    Ok(rounded as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: [usize; 3] = [100, 120, 40];

    #[test]
    fn ordered_clicks_keep_the_users_order_and_exclude_the_lists() {
        let ordered = params(r#"{"clicks": [[10, 20, 7, 0], [30, 40, 7, 1], [12, 22, 7, 0]]}"#)
            .slice_prompts(SHAPE)
            .unwrap();
        let signs: Vec<bool> = ordered.points.iter().map(|p| p.positive).collect();
        assert_eq!((ordered.slice, signs), (7, vec![false, true, false]));
        assert_eq!((ordered.points[1].x, ordered.points[1].y), (30.0, 40.0));
        let both = params(r#"{"clicks": [[10, 20, 7, 1]], "foreground": [[1, 2, 7]]}"#).slice_prompts(SHAPE);
        assert!(both.unwrap_err().to_string().contains("not both"));
        for bad in [
            r#"{"clicks": [[10, 20, 7]]}"#,
            r#"{"clicks": [[10, 20, 7, 2]]}"#,
            r#"{"clicks": [[10, 999, 7, 1]]}"#,
        ] {
            assert!(params(bad).slice_prompts(SHAPE).is_err(), "{bad}");
        }
        assert!(params(r#"{"clicks": [[1, 1, 1, 1], [2, 2, 2, 0]]}"#)
            .check_clicks(1)
            .is_err());
    }

    fn params(text: &str) -> InferParams {
        InferParams::parse(Some(text)).unwrap()
    }

    #[test]
    fn clicks_and_a_slicer_roi_become_pixels_of_one_slice() {
        let p = params(
            r#"{"foreground": [[10, 20, 7]], "background": [[30, 40, 7]], "roi": [50, 5, 6, 60, 3, 9], "slice": 7, "client_id": "x"}"#,
        );
        let s = p.slice_prompts(SHAPE).unwrap();
        assert_eq!(s.slice, 7);
        assert_eq!(s.points.len(), 2);
        assert_eq!((s.points[0].x, s.points[0].y, s.points[0].positive), (10.0, 20.0, true));
        assert!(!s.points[1].positive);
        let b = s.bbox.unwrap();
        assert_eq!((b.x0, b.y0, b.x1, b.y1), (5.0, 6.0, 51.0, 61.0));
    }

    #[test]
    fn the_slice_comes_from_the_clicks_or_the_box_middle() {
        assert_eq!(
            params(r#"{"foreground": [[1, 2, 33]], "slice": null}"#)
                .slice_prompts(SHAPE)
                .unwrap()
                .slice,
            33
        );
        assert_eq!(
            params(r#"{"roi": [1, 9, 1, 9, 10, 20]}"#)
                .slice_prompts(SHAPE)
                .unwrap()
                .slice,
            15
        );
    }

    #[test]
    fn a_3d_request_groups_clicks_by_slice_and_puts_the_roi_on_its_middle_slice() {
        let p = params(
            r#"{"foreground": [[10, 20, 7], [11, 21, 9]], "background": [[30, 40, 7]], "roi": [50, 5, 6, 60, 8, 12]}"#,
        );
        let v = p.volume_prompts(SHAPE).unwrap();
        let slices: Vec<usize> = v.annotations.iter().map(|a| a.slice).collect();
        assert_eq!(slices, [7, 9, 10]);
        assert_eq!(v.annotations[0].points.len(), 2);
        assert!(v.annotations[2].bbox.is_some() && v.annotations[2].points.is_empty());
        assert_eq!(v.limits, Some((8, 12)));
        assert!(params(r#"{"label": "x"}"#).volume_prompts(SHAPE).is_err());
        // A box on one slice (the web annotator's) is a prompt, not a bound on the walk.
        let flat = params(r#"{"roi": [50, 5, 6, 60, 9, 9]}"#)
            .volume_prompts(SHAPE)
            .unwrap();
        assert_eq!((flat.annotations[0].slice, flat.limits), (9, None));
    }

    #[test]
    fn bad_prompts_are_refused_with_what_is_wrong() {
        let refused = |text: &str| params(text).slice_prompts(SHAPE).unwrap_err().detail;
        assert!(refused(r#"{"foreground": [[100, 2, 3]]}"#).contains("outside the 100x120x40 volume"));
        assert!(refused(r#"{"foreground": [[1, 2]]}"#).contains("2 coordinates"));
        assert!(refused(r#"{"foreground": [[1, 2, 3]], "slice": 4}"#).contains("is on slice 3"));
        assert!(refused(r#"{"roi": [1, 2, 3, 4]}"#).contains("expected 6"));
        assert!(refused(r#"{"label": "x"}"#).contains("no prompt"));
        assert!(refused(r#"{"slice": 40, "foreground": [[1, 2, 3]]}"#).contains("outside the volume along axis 2"));
        assert!(InferParams::parse(Some("{not json")).is_err());
        assert!(InferParams::parse(Some(r#"{"foreground": "x"}"#)).is_err());
    }
}
