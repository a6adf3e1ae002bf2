//! Intensity normalization: how scanner values become the 0–255 gray levels SAM expects.
//!
//! The default is what MedicoSAM was trained on: per-image 1st–99th percentile window mapped to 0–255
//! (`percentile:1,99`). CT windows use the usual width/level presets; `mr` is the 0.5–99.5 percentile of
//! the non-zero values (MedSAM-Lite Slicer's MR choice), which ignores the background of skull-stripped
//! or masked scans.

use std::fmt;
use std::str::FromStr;

/// A mapping from raw values to 0–255.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Intensity {
    /// Linear from the minimum to the maximum value.
    MinMax,
    /// Linear between the `lo` and `hi` percentiles (0–100) of all finite values, clipped.
    Percentile {
        /// Lower percentile.
        lo: f64,
        /// Upper percentile.
        hi: f64,
    },
    /// Linear between the `lo` and `hi` percentiles of the non-zero finite values, clipped.
    NonZeroPercentile {
        /// Lower percentile.
        lo: f64,
        /// Upper percentile.
        hi: f64,
    },
    /// A display window: `level ± width/2`, clipped.
    Window {
        /// Window width.
        width: f64,
        /// Window centre.
        level: f64,
    },
}

/// Named presets: CT windows (width, level) in Hounsfield units, and the MR percentile rule.
const PRESETS: &[(&str, Intensity)] = &[
    (
        "ct-abdomen",
        Intensity::Window {
            width: 400.0,
            level: 40.0,
        },
    ),
    (
        "ct-lung",
        Intensity::Window {
            width: 1500.0,
            level: -600.0,
        },
    ),
    (
        "ct-brain",
        Intensity::Window {
            width: 80.0,
            level: 40.0,
        },
    ),
    (
        "ct-bone",
        Intensity::Window {
            width: 1800.0,
            level: 400.0,
        },
    ),
    ("mr", Intensity::NonZeroPercentile { lo: 0.5, hi: 99.5 }),
];

impl Default for Intensity {
    /// MedicoSAM's training normalization: per-image 1st–99th percentile.
    fn default() -> Self {
        Self::Percentile { lo: 1.0, hi: 99.0 }
    }
}

/// Why an intensity spelling is refused.
#[derive(Debug, thiserror::Error)]
pub enum IntensityError {
    /// Arguments that are not two finite numbers.
    #[error("intensity '{text}': {what} must be two numbers")]
    Numbers {
        /// The spelling.
        text: String,
        /// Which arguments.
        what: &'static str,
    },
    /// Percentiles out of order or range.
    #[error("intensity '{text}': need 0 <= LO < HI <= 100")]
    Percentiles {
        /// The spelling.
        text: String,
    },
    /// A window of zero or negative width.
    #[error("intensity '{text}': the window width must be positive")]
    Width {
        /// The spelling.
        text: String,
    },
    /// No such mapping.
    #[error("unknown intensity '{text}' (expected minmax, percentile:LO,HI, nonzero-percentile:LO,HI, window:WIDTH,LEVEL or one of {presets})")]
    Unknown {
        /// The spelling.
        text: String,
        /// The preset names.
        presets: String,
    },
}

impl FromStr for Intensity {
    type Err = IntensityError;

    fn from_str(text: &str) -> Result<Self, IntensityError> {
        let numbers = |what: &'static str| IntensityError::Numbers {
            text: text.into(),
            what,
        };
        let pair = |args: &str, what: &'static str| -> Result<(f64, f64), IntensityError> {
            let values: Vec<f64> = args
                .split(',')
                .map(|v| v.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| numbers(what))?;
            match values.as_slice() {
                [a, b] if a.is_finite() && b.is_finite() => Ok((*a, *b)),
                _ => Err(numbers(what)),
            }
        };
        if text == "minmax" {
            return Ok(Self::MinMax);
        }
        if let Some((_, preset)) = PRESETS.iter().find(|(name, _)| *name == text) {
            return Ok(*preset);
        }
        if let Some(args) = text.strip_prefix("percentile:") {
            let (lo, hi) = pair(args, "LO,HI")?;
            if !(0.0..hi).contains(&lo) || hi > 100.0 {
                return Err(IntensityError::Percentiles { text: text.into() });
            }
            return Ok(Self::Percentile { lo, hi });
        }
        if let Some(args) = text.strip_prefix("nonzero-percentile:") {
            let (lo, hi) = pair(args, "LO,HI")?;
            if !(0.0..hi).contains(&lo) || hi > 100.0 {
                return Err(IntensityError::Percentiles { text: text.into() });
            }
            return Ok(Self::NonZeroPercentile { lo, hi });
        }
        if let Some(args) = text.strip_prefix("window:") {
            let (width, level) = pair(args, "WIDTH,LEVEL")?;
            if width <= 0.0 {
                return Err(IntensityError::Width { text: text.into() });
            }
            return Ok(Self::Window { width, level });
        }
        let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        Err(IntensityError::Unknown {
            text: text.into(),
            presets: names.join(", "),
        })
    }
}

impl fmt::Display for Intensity {
    /// The canonical spelling (presets by name), as accepted by [`FromStr`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = PRESETS.iter().find(|(_, p)| p == self) {
            return f.write_str(name);
        }
        match self {
            Self::MinMax => f.write_str("minmax"),
            Self::Percentile { lo, hi } => write!(f, "percentile:{lo},{hi}"),
            Self::NonZeroPercentile { lo, hi } => write!(f, "nonzero-percentile:{lo},{hi}"),
            Self::Window { width, level } => write!(f, "window:{width},{level}"),
        }
    }
}

/// The `q`-th percentile (0–100) of sorted values, interpolating linearly between closest ranks
/// (numpy's default).
fn percentile_of_sorted(sorted: &[f32], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let i = pos.floor() as usize;
    let j = (i + 1).min(sorted.len() - 1);
    sorted[i] as f64 + (sorted[j] as f64 - sorted[i] as f64) * (pos - i as f64)
}

fn sorted_finite(values: &[f32], keep: impl Fn(f32) -> bool) -> Vec<f32> {
    let mut sorted: Vec<f32> = values.iter().copied().filter(|v| v.is_finite() && keep(*v)).collect();
    sorted.sort_unstable_by(f32::total_cmp);
    sorted
}

impl Intensity {
    /// The value range `[low, high]` this mapping stretches to 0–255 for `values`; `None` when no
    /// finite value is there to measure.
    pub fn range(&self, values: &[f32]) -> Option<(f64, f64)> {
        match *self {
            Self::Window { width, level } => Some((level - width / 2.0, level + width / 2.0)),
            Self::MinMax => {
                let sorted = sorted_finite(values, |_| true);
                Some((*sorted.first()? as f64, *sorted.last()? as f64))
            }
            Self::Percentile { lo, hi } => {
                let sorted = sorted_finite(values, |_| true);
                (!sorted.is_empty()).then(|| (percentile_of_sorted(&sorted, lo), percentile_of_sorted(&sorted, hi)))
            }
            Self::NonZeroPercentile { lo, hi } => {
                let sorted = sorted_finite(values, |v| v != 0.0);
                (!sorted.is_empty()).then(|| (percentile_of_sorted(&sorted, lo), percentile_of_sorted(&sorted, hi)))
            }
        }
    }

    /// Maps `values` to 0–255 (clipped, rounded); non-finite values become 0.
    pub fn apply(&self, values: &[f32]) -> Vec<u8> {
        let Some((low, high)) = self.range(values) else {
            return vec![0; values.len()];
        };
        let span = (high - low).max(f64::EPSILON);
        values
            .iter()
            .map(|&v| {
                if !v.is_finite() {
                    return 0;
                }
                let unit = ((v as f64 - low) / span).clamp(0.0, 1.0);
                (unit * 255.0).round() as u8
            })
            .collect()
    }

    /// Maps gray values to interleaved RGB (`[h, w, 3]`), gray copied to the three channels.
    pub fn apply_rgb(&self, values: &[f32]) -> Vec<u8> {
        self.apply(values).iter().flat_map(|&v| [v, v, v]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_and_prints_it_back() {
        for text in [
            "minmax",
            "percentile:1,99",
            "percentile:0.5,99.5",
            "nonzero-percentile:2,98",
            "window:350,50",
            "ct-abdomen",
            "ct-lung",
            "ct-brain",
            "ct-bone",
            "mr",
        ] {
            let parsed: Intensity = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        // A window equal to a preset is named by the preset.
        assert_eq!("window:400,40".parse::<Intensity>().unwrap().to_string(), "ct-abdomen");
    }

    #[test]
    fn rejects_bad_specifications_with_the_reason() {
        for (text, needle) in [
            ("percentile:99,1", "LO < HI"),
            ("percentile:1", "two numbers"),
            ("window:-5,40", "positive"),
            ("window:a,b", "two numbers"),
            ("ct-heart", "unknown intensity"),
        ] {
            let err = text.parse::<Intensity>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn window_maps_level_to_mid_gray_and_clips() {
        let ct = Intensity::Window {
            width: 400.0,
            level: 40.0,
        };
        assert_eq!(
            ct.apply(&[-1000.0, -160.0, 40.0, 240.0, 3000.0]),
            vec![0, 0, 128, 255, 255]
        );
    }

    #[test]
    fn percentile_matches_numpy_interpolation() {
        // numpy.percentile(arange(101), [1, 99]) == [1, 99]; values 0..=100.
        let values: Vec<f32> = (0..=100).map(|v| v as f32).collect();
        let p = Intensity::default();
        assert_eq!(p.range(&values), Some((1.0, 99.0)));
        let mapped = p.apply(&values);
        assert_eq!(
            (mapped[0], mapped[1], mapped[50], mapped[99], mapped[100]),
            (0, 0, 128, 255, 255)
        );
    }

    #[test]
    fn mr_ignores_zero_background() {
        let mut values = vec![0.0f32; 1000];
        values.extend((1..=200).map(|v| v as f32));
        let (low, high) = Intensity::NonZeroPercentile { lo: 0.5, hi: 99.5 }
            .range(&values)
            .unwrap();
        assert!(low > 1.0 && low < 2.5 && high > 198.0 && high < 200.0, "{low} {high}");
    }

    #[test]
    fn non_finite_and_empty_inputs_are_safe() {
        assert_eq!(Intensity::MinMax.apply(&[f32::NAN, 1.0, 3.0]), vec![0, 0, 255]);
        assert_eq!(Intensity::default().apply(&[f32::NAN; 3]), vec![0, 0, 0]);
        assert_eq!(Intensity::MinMax.apply(&[5.0, 5.0]), vec![0, 0]);
    }
}
