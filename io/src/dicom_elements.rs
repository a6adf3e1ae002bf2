//! Building DICOM objects medico writes (SEG and RT Structure Sets): element constructors, new UIDs, the date
//! and time, the character set, and the atomic write of a dataset with its file meta.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use crate::atomic_output::{persist, temp_beside};
use crate::IoError;

/// medico's implementation class UID (a UUID-derived `2.25` UID, fixed).
const IMPLEMENTATION_CLASS_UID: &str = "2.25.255734890216617463936347733829741651779";

/// A text attribute's value without padding; `None` when absent or empty.
pub(crate) fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .filter(|s| !s.is_empty())
}

/// Whether any text value of `obj`, its sequences' items included, is not ASCII.
pub(crate) fn has_non_ascii_text(obj: &InMemDicomObject) -> bool {
    obj.iter().any(|element| match element.value() {
        Value::Primitive(PrimitiveValue::Str(text)) => !text.is_ascii(),
        Value::Primitive(PrimitiveValue::Strs(texts)) => texts.iter().any(|t| !t.is_ascii()),
        Value::Sequence(sequence) => sequence.items().iter().any(has_non_ascii_text),
        _ => false,
    })
}

/// A new UID under the `2.25` root (a random 128-bit UUID as a decimal).
pub(crate) fn new_uid() -> String {
    format!("2.25.{}", rand::random::<u128>() >> 1)
}

/// Today's date and the time now (UTC), as DICOM DA and TM.
pub(crate) fn date_time_now() -> (String, String) {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}{month:02}{day:02}"),
        format!("{:02}{:02}{:02}", rest / 3600, rest / 60 % 60, rest % 60),
    )
}

/// A one-valued text element.
pub(crate) fn string(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// A multi-valued text element.
pub(crate) fn strings(tag: Tag, vr: VR, values: &[&str]) -> DataElement<InMemDicomObject> {
    DataElement::new(
        tag,
        vr,
        PrimitiveValue::Strs(values.iter().map(|v| v.to_string()).collect()),
    )
}

/// Decimal strings (DS: at most 16 characters each).
pub(crate) fn decimals(tag: Tag, values: &[f64]) -> DataElement<InMemDicomObject> {
    let text = |v: f64| {
        let plain = format!("{}", v + 0.0);
        if plain.len() <= 16 {
            plain
        } else {
            format!("{:.10}", v)
                .chars()
                .take(16)
                .collect::<String>()
                .trim_end_matches('.')
                .to_string()
        }
    };
    DataElement::new(
        tag,
        VR::DS,
        PrimitiveValue::Strs(values.iter().map(|&v| text(v)).collect()),
    )
}

/// A US element.
pub(crate) fn unsigned(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

/// A sequence element of `items`.
pub(crate) fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// A sequence item of `elements`.
pub(crate) fn item(elements: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(elements)
}

/// A code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning).
pub(crate) fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    item(vec![
        string(tags::CODE_VALUE, VR::SH, value),
        string(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        string(tags::CODE_MEANING, VR::LO, meaning),
    ])
}

/// Writes `obj` with its file meta (explicit VR little endian) to `path` atomically: a temporary file beside
/// it, renamed when complete. Text beyond ASCII (a label such as "肝臓", a patient's name from a Latin-1 or
/// Japanese source) is written as UTF-8, and the file says so; an all-ASCII file keeps the default repertoire.
pub(crate) fn write_dataset(path: &Path, mut obj: InMemDicomObject) -> Result<(), IoError> {
    if has_non_ascii_text(&obj) {
        obj.put(string(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    }
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name("MEDICO"),
        )
        .map_err(|e| IoError::write(path, e))?;
    let temp = temp_beside(path, ".dcm")?;
    file.write_to_file(temp.path()).map_err(|e| IoError::write(path, e))?;
    persist(temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        let (date, time) = date_time_now();
        assert_eq!((date.len(), time.len()), (8, 6));
        assert!(date.starts_with("20"), "{date}");
    }
}
