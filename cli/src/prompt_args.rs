//! Prompt arguments: `--box` and `--point` in pixel / voxel coordinates of the slice, or with `--world`
//! in RAS millimetres (converted through the volume's affine onto the slice they lie on).

use anyhow::anyhow;
use medico_io::volume::Volume;
use medico_models::prompt::{BoxPrompt, Point};

use crate::Failure;

/// Prompts as typed: numbers still in the user's frame.
pub struct RawPrompts {
    /// `--box` values (4 in pixels, 6 with `--world`).
    pub bbox: Option<Vec<f64>>,
    /// `--point` values (2–3 in pixels, 3–4 with `--world`) with the label.
    pub points: Vec<(Vec<f64>, bool)>,
}

fn numbers(text: &str, what: &str) -> Result<Vec<f64>, Failure> {
    let values = text
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Failure::usage(anyhow!("{what} '{text}': expected comma-separated numbers")))?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Failure::usage(anyhow!("{what} '{text}': numbers must be finite")));
    }
    Ok(values)
}

impl RawPrompts {
    /// Parses `--box` and `--point` texts; `world` expects x,y,z coordinates.
    pub fn parse(bbox: Option<&str>, points: &[String], world: bool) -> Result<Self, Failure> {
        let dims = if world { 3 } else { 2 };
        let bbox = bbox
            .map(|text| {
                let v = numbers(text, "--box")?;
                if v.len() != 2 * dims {
                    let form = if world {
                        "x0,y0,z0,x1,y1,z1 (RAS mm)"
                    } else {
                        "x0,y0,x1,y1"
                    };
                    return Err(Failure::usage(anyhow!("--box '{text}': expected {form}")));
                }
                Ok(v)
            })
            .transpose()?;
        let points = points
            .iter()
            .map(|text| {
                let mut v = numbers(text, "--point")?;
                let positive = match v.len() - dims.min(v.len()) {
                    0 if v.len() == dims => true,
                    1 if v[dims] == 1.0 => true,
                    1 if v[dims] == 0.0 => false,
                    _ => {
                        let form = if world { "x,y,z[,label] (RAS mm)" } else { "x,y[,label]" };
                        return Err(Failure::usage(anyhow!(
                            "--point '{text}': expected {form} with label 0 or 1"
                        )));
                    }
                };
                v.truncate(dims);
                Ok((v, positive))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if points.is_empty() && bbox.is_none() {
            return Err(Failure::usage(anyhow!("give a prompt: --box and/or --point")));
        }
        Ok(Self { bbox, points })
    }

    /// Pixel prompts (no `--world`).
    pub fn in_pixels(&self) -> (Vec<Point>, Option<BoxPrompt>) {
        let points = self
            .points
            .iter()
            .map(|(v, positive)| Point {
                x: v[0],
                y: v[1],
                positive: *positive,
            })
            .collect();
        let bbox = self.bbox.as_ref().map(|v| BoxPrompt {
            x0: v[0],
            y0: v[1],
            x1: v[2],
            y1: v[3],
        });
        (points, bbox)
    }

    /// World prompts mapped onto slices along `axis`: the in-plane prompts, and the slice index they
    /// lie on (all world positions must round to the same slice).
    pub fn on_slice_from_world(
        &self,
        volume: &Volume,
        axis: usize,
    ) -> Result<(Vec<Point>, Option<BoxPrompt>, usize), Failure> {
        let (ax, ay) = Volume::in_plane_axes(axis);
        let to_voxel = |xyz: &[f64]| {
            volume
                .world_to_voxel([xyz[0], xyz[1], xyz[2]])
                .ok_or_else(|| Failure::input(anyhow!("the volume's affine is singular: --world cannot be used")))
        };
        let mut along = Vec::new();
        let mut points = Vec::new();
        for (v, positive) in &self.points {
            let ijk = to_voxel(v)?;
            along.push(ijk[axis]);
            points.push(Point {
                x: ijk[ax],
                y: ijk[ay],
                positive: *positive,
            });
        }
        let bbox = match &self.bbox {
            Some(v) => {
                let (a, b) = (to_voxel(&v[..3])?, to_voxel(&v[3..])?);
                along.extend([a[axis], b[axis]]);
                Some(BoxPrompt {
                    x0: a[ax].min(b[ax]),
                    y0: a[ay].min(b[ay]),
                    x1: a[ax].max(b[ax]),
                    y1: a[ay].max(b[ay]),
                })
            }
            None => None,
        };
        let slices: Vec<i64> = along.iter().map(|k| k.round() as i64).collect();
        let first = slices[0];
        if slices.iter().any(|&k| k != first) {
            return Err(Failure::input(anyhow!(
                "--world prompts lie on different slices along axis {axis} (voxel positions {:?}); put them on one slice",
                along.iter().map(|k| (k * 100.0).round() / 100.0).collect::<Vec<_>>()
            )));
        }
        let count = volume.slices(axis) as i64;
        if !(0..count).contains(&first) {
            return Err(Failure::input(anyhow!(
                "--world prompts lie at slice {first} along axis {axis}, outside the volume (0..{count})"
            )));
        }
        Ok((points, bbox, first as usize))
    }
}
