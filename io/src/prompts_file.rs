//! Prompts files: a JSON list of annotated slices, `{"slice": K, "box": [x0, y0, x1, y1], "points":
//! [[x, y, label], ...]}`, in slice pixels (label 1 positive, 0 negative).

use std::path::Path;

use medico_models::prompt::{BoxPrompt, Point};
use serde::Deserialize;

use crate::IoError;

/// Prompts files larger than this are refused before parsing (a list of clicks, not a dataset).
const MAX_BYTES: u64 = 16 << 20;

/// One entry of a prompts file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlicePrompts {
    slice: usize,
    #[serde(default, rename = "box")]
    bbox: Option<[f64; 4]>,
    #[serde(default)]
    points: Vec<[f64; 3]>,
}

/// One annotated slice's prompts, in slice pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// The slice.
    pub slice: usize,
    /// Points.
    pub points: Vec<Point>,
    /// Box.
    pub bbox: Option<BoxPrompt>,
}

/// Reads a prompts file.
pub fn read_prompts_file(path: &Path) -> Result<Vec<Annotation>, IoError> {
    let size = std::fs::metadata(path).map_err(|e| IoError::read(path, e))?.len();
    if size > MAX_BYTES {
        return Err(IoError::unusable(
            path,
            format!("{size} bytes is not a prompts list (at most {MAX_BYTES})"),
        ));
    }
    let text = std::fs::read(path).map_err(|e| IoError::read(path, e))?;
    parse_prompts(path, &text)
}

/// Parses the bytes of a prompts file; `path` names it in errors.
pub fn parse_prompts(path: &Path, bytes: &[u8]) -> Result<Vec<Annotation>, IoError> {
    let entries: Vec<SlicePrompts> =
        serde_json::from_slice(bytes).map_err(|e| IoError::corrupt(path, "not a prompts list", e))?;
    if entries.is_empty() {
        return Err(IoError::unusable(path, "the prompts list is empty"));
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| annotation(path, i, entry))
        .collect()
}

fn annotation(path: &Path, index: usize, entry: SlicePrompts) -> Result<Annotation, IoError> {
    if entry.bbox.is_none() && entry.points.is_empty() {
        return Err(IoError::unusable(
            path,
            format!("entry {index} (slice {}) has neither a box nor points", entry.slice),
        ));
    }
    let points = entry
        .points
        .iter()
        .map(|&[x, y, label]| match label {
            l if l == 1.0 || l == 0.0 => Ok(Point {
                x,
                y,
                positive: l == 1.0,
            }),
            other => Err(IoError::unusable(
                path,
                format!("entry {index}: point label {other} (expected 0 or 1)"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Annotation {
        slice: entry.slice,
        points,
        bbox: entry.bbox.map(|[x0, y0, x1, y1]| BoxPrompt { x0, y0, x1, y1 }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Annotation>, String> {
        parse_prompts(Path::new("p.json"), text.as_bytes()).map_err(|e| crate::chain_text(&e))
    }

    #[test]
    fn entries_become_annotations() {
        let list =
            parse(r#"[{"slice": 3, "box": [1, 2, 30, 40]}, {"slice": 5, "points": [[4, 5, 1], [6, 7, 0]]}]"#).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].slice, 3);
        assert_eq!(list[0].bbox.unwrap().x1, 30.0);
        assert!(list[1].points[0].positive && !list[1].points[1].positive);
    }

    #[test]
    fn each_defect_is_named_with_the_file() {
        for (text, needle) in [
            ("[]", "empty"),
            ("{}", "not a prompts list"),
            (r#"[{"slice": 1}]"#, "neither a box nor points"),
            (r#"[{"slice": 1, "points": [[1, 2, 3]]}]"#, "point label 3"),
            (r#"[{"slice": 1, "box": [1, 2, 3]}]"#, "not a prompts list"),
            (r#"[{"slice": 1, "box": [0, 0, 4, 4], "mask": 1}]"#, "unknown field"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with("p.json: ") && err.contains(needle), "{text}: {err}");
        }
    }
}
