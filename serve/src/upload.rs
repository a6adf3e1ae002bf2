//! `PUT /session/` uploads: the multipart `files` fields (one NIfTI file, one zip of a DICOM series, or
//! the files of a DICOM series) written to a private temporary folder, then read as a volume.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::multipart::{Field, Multipart};
use axum::http::StatusCode;
use medico_io::input::{open_scan_within, ReadLimits, Scan};
use medico_io::volume::Volume;
use tempfile::TempDir;

use crate::error::ApiError;

/// Uploaded files on disk.
pub struct Upload {
    /// The private folder holding them (deleted when dropped).
    pub dir: TempDir,
    /// What to open: the one file, or the folder of several.
    pub image: PathBuf,
    /// The first file's name as the client gave it.
    pub name: String,
}

/// A `label` file sent with an inference request: the segmentation to continue from.
pub struct LabelFile {
    /// The private folder holding it (deleted when dropped).
    _dir: TempDir,
    /// The file, under the client's (sanitised) name, whose extension says the format.
    pub path: PathBuf,
}

/// A multipart request: its files and its text fields.
pub struct Received {
    /// The `files`/`file` fields, when there were any.
    pub upload: Option<Upload>,
    /// A non-empty `label` file, when there was one (MONAI Label's current segmentation).
    pub label: Option<LabelFile>,
    /// Text fields (e.g. `params`) by name.
    pub fields: std::collections::HashMap<String, String>,
}

/// Text fields the server reads; any other text field is read past and dropped.
pub const TEXT_FIELDS: [&str; 2] = ["params", "label"];

/// Receives a multipart request: `files` and `file` fields to disk, the [`TEXT_FIELDS`] in memory (at most
/// [`MAX_TEXT_BYTES`] together); other fields are read and dropped.
pub async fn receive(mut multipart: Multipart) -> Result<Received, ApiError> {
    let dir = tempfile::Builder::new()
        .prefix("medico-session-")
        .tempdir()
        .map_err(|e| ApiError::internal(format!("cannot create a folder for the upload: {e}")))?;
    let files = dir.path().join("files");
    std::fs::create_dir(&files).map_err(|e| ApiError::internal(format!("{}: {e}", files.display())))?;
    let mut written = Vec::new();
    let mut fields = std::collections::HashMap::new();
    let mut label = None;
    let mut text_bytes = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(truncated)? {
        let field_name = field.name().unwrap_or_default().to_string();
        if field_name == "files" || field_name == "file" {
            let name = safe_name(field.file_name(), written.len());
            let path = files.join(format!("{:04}-{name}", written.len()));
            save(field, &path).await?;
            written.push((path, name));
        } else if field_name == "label" && field.file_name().is_some() && label.is_none() {
            label = save_label(field).await?;
        } else if field.file_name().is_none() && TEXT_FIELDS.contains(&field_name.as_str()) {
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(truncated)? {
                text_bytes += chunk.len();
                if text_bytes > MAX_TEXT_BYTES {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the text fields are over {} kB together", MAX_TEXT_BYTES >> 10),
                    ));
                }
                text.extend_from_slice(&chunk);
            }
            let text = String::from_utf8(text)
                .map_err(|_| ApiError::bad_request(format!("field '{field_name}' is not UTF-8 text")))?;
            fields.insert(field_name, text);
        } else {
            while field.chunk().await.map_err(truncated)?.is_some() {}
        }
    }
    let upload = match written.len() {
        0 => None,
        1 => {
            let (path, name) = written.remove(0);
            Some(Upload { dir, image: path, name })
        }
        _ => {
            let name = written[0].1.clone();
            Some(Upload {
                dir,
                image: files,
                name,
            })
        }
    };
    Ok(Received { upload, label, fields })
}

/// Streams a `label` file part to a private folder; `None` when it is empty (clients send an empty one).
async fn save_label(field: Field<'_>) -> Result<Option<LabelFile>, ApiError> {
    let dir = tempfile::Builder::new()
        .prefix("medico-label-")
        .tempdir()
        .map_err(|e| ApiError::internal(format!("cannot create a folder for the label: {e}")))?;
    let path = dir.path().join(safe_name(field.file_name(), 0));
    save(field, &path).await?;
    let empty = std::fs::metadata(&path).map(|m| m.len() == 0).unwrap_or(true);
    Ok((!empty).then_some(LabelFile { _dir: dir, path }))
}

/// Text read from one request, all fields together.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// How long a request waits for a free upload slot before a 503.
const UPLOAD_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits for one of the server's upload slots (at most [`UPLOAD_SLOT_WAIT`]); a 503 when none frees up.
pub async fn upload_slot(uploads: &tokio::sync::Semaphore) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    match tokio::time::timeout(UPLOAD_SLOT_WAIT, uploads.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is receiving its maximum of uploads at once; try again shortly",
        )),
    }
}

/// A multipart stream that ended early or broke its framing: the client's fault (400), or a body over the
/// upload limit (413).
fn truncated(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        _ => axum::http::StatusCode::BAD_REQUEST,
    };
    ApiError::new(
        status,
        format!(
            "the upload could not be read (truncated or not multipart/form-data): {}",
            e.body_text()
        ),
    )
}

/// Streams one field to `path`.
async fn save(mut field: Field<'_>, path: &Path) -> Result<(), ApiError> {
    let mut file = std::fs::File::create(path).map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    while let Some(chunk) = field.chunk().await.map_err(truncated)? {
        file.write_all(&chunk)
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// The last path component of a client's file name, restricted to harmless characters (the extension,
/// which says the format, is kept).
fn safe_name(name: Option<&str>, index: usize) -> String {
    let base = name
        .and_then(|n| n.rsplit(['/', '\\']).next())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    let base = base.trim_start_matches('.');
    if base.is_empty() {
        format!("upload-{index}")
    } else {
        base.chars().take(120).collect()
    }
}

/// Reads the upload as a volume within `limits` (checked from the file's header before anything is
/// decoded: 413 over them): a zip is unpacked first (a DICOM series); a 2D image is refused. Errors name
/// the file as the client did, never the server's folders. Returns the volume and what was read (the file,
/// or the folder of the unpacked series).
pub fn open_volume(upload: &Upload, limits: &ReadLimits) -> Result<(Volume, PathBuf), ApiError> {
    let image = if is_zip(&upload.image) {
        unzip(
            &upload.image,
            &upload.name,
            &upload.dir.path().join("unzipped"),
            zip_budget(limits),
        )?
    } else {
        upload.image.clone()
    };
    let hidden = [upload.image.as_path(), upload.dir.path()];
    let volume = read_volume(&image, &upload.name, &hidden, limits)?;
    Ok((volume, image))
}

/// Reads the scan at `path` as a volume within `limits`, for a client that calls it `name`: a file over the
/// limits is a 413, an unreadable file or a 2D image a 422, and the messages name `name` where the readers
/// name one of the server's `hidden` paths (the longest first: a file before its folder).
pub fn read_volume(path: &Path, name: &str, hidden: &[&Path], limits: &ReadLimits) -> Result<Volume, ApiError> {
    let unreadable = |e: medico_io::IoError| {
        let mut text = medico_io::chain_text(&e);
        for server_path in hidden {
            text = text.replace(&server_path.display().to_string(), name);
        }
        match e {
            medico_io::IoError::TooLarge { .. } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, text),
            _ => ApiError::unprocessable(text),
        }
    };
    match open_scan_within(path, None, limits).map_err(unreadable)? {
        Scan::Volume(volume) => Ok(*volume),
        Scan::Image(_) => Err(ApiError::unprocessable(format!(
            "{name}: a 2D image; the server segments volumes (NIfTI, NRRD, or a DICOM series)"
        ))),
    }
}

/// Bytes a zip may unpack to: a DICOM series of the largest volume at 16 bits per voxel, plus headers.
fn zip_budget(limits: &ReadLimits) -> u64 {
    (limits.max_voxels as u64).saturating_mul(2) + (16 << 20)
}

fn is_zip(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04"
}

/// Unpacks the regular files of the zip at `path` (the client's `name`) into `dest`, flattened, names made
/// safe; at most `max_bytes` in all, refused before anything is written when the zip's own directory
/// declares more.
fn unzip(path: &Path, name: &str, dest: &Path, max_bytes: u64) -> Result<PathBuf, ApiError> {
    let bad = |what: String| ApiError::unprocessable(format!("{name}: {what}"));
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{name}: unpacks to more than {} MB", max_bytes >> 20),
        )
    };
    let file = std::fs::File::open(path).map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a readable zip: {e}")))?;
    let declared = (0..archive.len())
        .filter_map(|i| archive.by_index_raw(i).ok().map(|entry| entry.size()))
        .fold(0u64, u64::saturating_add);
    if declared > max_bytes {
        return Err(too_large());
    }
    std::fs::create_dir_all(dest).map_err(|e| ApiError::internal(format!("{}: {e}", dest.display())))?;
    let mut total = 0u64;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| bad(format!("zip entry {index}: {e}")))?;
        if !entry.is_file() {
            continue;
        }
        let entry_name = entry.name().map(|n| n.to_string()).unwrap_or_default();
        let safe = safe_name(Some(&entry_name), index);
        let out_path = dest.join(format!("{index:05}-{safe}"));
        let mut out =
            std::fs::File::create(&out_path).map_err(|e| ApiError::internal(format!("{}: {e}", out_path.display())))?;
        let budget = max_bytes.saturating_sub(total);
        // The entry's data may not match its declared size: the budget holds whatever it inflates to.
        let copied = std::io::copy(&mut std::io::Read::take(&mut entry, budget + 1), &mut out)
            .map_err(|e| bad(format!("zip entry {entry_name}: {e}")))?;
        total += copied;
        if copied > budget {
            return Err(too_large());
        }
    }
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_file_names_cannot_leave_the_folder() {
        assert_eq!(safe_name(Some("../../etc/passwd"), 0), "passwd");
        assert_eq!(safe_name(Some("C:\\x\\scan 1.nii.gz"), 0), "scan_1.nii.gz");
        assert_eq!(safe_name(Some(".."), 3), "upload-3");
        assert_eq!(safe_name(None, 1), "upload-1");
    }
}
