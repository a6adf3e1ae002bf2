//! `PUT /session/` uploads: the multipart `files` fields (one NIfTI file, one zip of a DICOM series, or
//! the files of a DICOM series) written to a private temporary folder, then read as a volume.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::multipart::{Field, Multipart};
use medico_io::input::{open_scan, Scan};
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

/// A multipart request: its files and its text fields.
pub struct Received {
    /// The `files`/`file` fields, when there were any.
    pub upload: Option<Upload>,
    /// Text fields (e.g. `params`) by name.
    pub fields: std::collections::HashMap<String, String>,
}

/// Receives a multipart request: `files` and `file` fields to disk, text fields (at most 1 MB each) in
/// memory; other file fields (`label`) are read and dropped.
pub async fn receive(mut multipart: Multipart) -> Result<Received, ApiError> {
    let dir = tempfile::Builder::new()
        .prefix("medico-session-")
        .tempdir()
        .map_err(|e| ApiError::internal(format!("cannot create a folder for the upload: {e}")))?;
    let files = dir.path().join("files");
    std::fs::create_dir(&files).map_err(|e| ApiError::internal(format!("{}: {e}", files.display())))?;
    let mut written = Vec::new();
    let mut fields = std::collections::HashMap::new();
    while let Some(mut field) = multipart.next_field().await.map_err(truncated)? {
        let field_name = field.name().unwrap_or_default().to_string();
        if field_name == "files" || field_name == "file" {
            let name = safe_name(field.file_name(), written.len());
            let path = files.join(format!("{:04}-{name}", written.len()));
            save(field, &path).await?;
            written.push((path, name));
        } else if field.file_name().is_none() {
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(truncated)? {
                text.extend_from_slice(&chunk);
                if text.len() > MAX_TEXT_FIELD {
                    return Err(ApiError::bad_request(format!("field '{field_name}' is over 1 MB")));
                }
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
    Ok(Received { upload, fields })
}

/// Largest text field read.
const MAX_TEXT_FIELD: usize = 1 << 20;

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

/// Reads the upload as a volume: a zip is unpacked first (a DICOM series); a 2D image is refused, and so is
/// a volume of more than `max_voxels`.
pub fn open_volume(upload: &Upload, max_voxels: usize) -> Result<(Volume, PathBuf), ApiError> {
    let image = if is_zip(&upload.image) {
        unzip(
            &upload.image,
            &upload.dir.path().join("unzipped"),
            max_voxels.saturating_mul(8),
        )?
    } else {
        upload.image.clone()
    };
    check_inflated_size(&upload.name, &image, max_voxels.saturating_mul(8))?;
    let unreadable =
        |e: medico_io::IoError| ApiError::unprocessable(format!("{}: {}", upload.name, medico_io::chain_text(&e)));
    let volume = match open_scan(&image, None).map_err(unreadable)? {
        Scan::Volume(volume) => *volume,
        Scan::Image(_) => {
            return Err(ApiError::unprocessable(format!(
                "{}: a 2D image; the server segments volumes (NIfTI, or a DICOM series)",
                upload.name
            )))
        }
    };
    let voxels: usize = volume.shape().iter().product();
    if voxels > max_voxels {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{}: {voxels} voxels; this server takes at most {max_voxels} per session",
                upload.name
            ),
        ));
    }
    Ok((volume, image))
}

/// Refuses a gzip file (e.g. `.nii.gz`) that inflates to more than `max_bytes` (413), by streaming it once
/// before anything is decoded: a few MB of upload cannot make the server hold gigabytes.
fn check_inflated_size(name: &str, path: &Path, max_bytes: usize) -> Result<(), ApiError> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut magic = [0u8; 2];
    if std::io::Read::read_exact(&mut file, &mut magic).is_err() || magic != [0x1f, 0x8b] {
        return Ok(());
    }
    let file = std::fs::File::open(path).map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    let limit = max_bytes as u64 + (1 << 20);
    let decoder = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    // A corrupt stream is left to the reader, which names the problem.
    let inflated = std::io::copy(&mut std::io::Read::take(decoder, limit + 1), &mut std::io::sink()).unwrap_or(0);
    if inflated > limit {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("{name}: inflates to more than {limit} bytes; this server takes volumes of at most {max_bytes}"),
        ));
    }
    Ok(())
}

fn is_zip(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"PK\x03\x04"
}

/// Unpacks the regular files of a zip (flattened, names made safe) into `dest`; at most `max_bytes` in all.
fn unzip(path: &Path, dest: &Path, max_bytes: usize) -> Result<PathBuf, ApiError> {
    let bad = |what: String| ApiError::unprocessable(format!("{}: {what}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a readable zip: {e}")))?;
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
        let name = safe_name(Some(&entry_name), index);
        let out_path = dest.join(format!("{index:05}-{name}"));
        let mut out =
            std::fs::File::create(&out_path).map_err(|e| ApiError::internal(format!("{}: {e}", out_path.display())))?;
        let budget = (max_bytes as u64).saturating_sub(total);
        let copied = std::io::copy(&mut std::io::Read::take(&mut entry, budget + 1), &mut out)
            .map_err(|e| bad(format!("zip entry {entry_name}: {e}")))?;
        total += copied;
        if copied > budget {
            return Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("{}: unpacks to more than {max_bytes} bytes", path.display()),
            ));
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
