//! The default model, built into the binary: `medico-tiny` (see `models/medico-tiny/README.md`), a small SAM
//! trained by medico's own trainer. `segment` uses it when no `--model` is given, so a fresh install segments
//! without a network or a separate download. On first use the bundle is written into the cache folder
//! (`$MEDICO_CACHE_DIR`, else the user cache) under a name that carries its manifest's hash, through a
//! temporary folder and a rename, and verified like any other bundle.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use medico_export::registry::default_cache_dir;
use medico_export::Bundle;
use xxhash_rust::xxh3::xxh3_64;

/// The default model's name.
pub const DEFAULT_MODEL: &str = "medico-tiny";

/// The bundle's files, as committed under `models/medico-tiny/bundle`.
const FILES: [(&str, &[u8]); 5] = [
    (
        "model.json",
        include_bytes!("../../models/medico-tiny/bundle/model.json"),
    ),
    (
        "encoder.onnx",
        include_bytes!("../../models/medico-tiny/bundle/encoder.onnx"),
    ),
    (
        "decoder.onnx",
        include_bytes!("../../models/medico-tiny/bundle/decoder.onnx"),
    ),
    (
        "decoder_single.onnx",
        include_bytes!("../../models/medico-tiny/bundle/decoder_single.onnx"),
    ),
    (
        "decoder_lowres.onnx",
        include_bytes!("../../models/medico-tiny/bundle/decoder_lowres.onnx"),
    ),
];

/// The folder of the default bundle, written into the cache on first use.
pub fn default_model_dir() -> anyhow::Result<PathBuf> {
    let parent = default_cache_dir().join("bundles");
    let dir = parent.join(format!("{DEFAULT_MODEL}-{:016x}", xxh3_64(FILES[0].1)));
    if Bundle::open(&dir).is_ok() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    let prefix = format!(".{DEFAULT_MODEL}-");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    #[cfg(unix)]
    {
        // An ordinary folder once renamed (0777 less the umask), not a private temporary one.
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o777));
    }
    let staging = builder
        .tempdir_in(&parent)
        .with_context(|| format!("{}: cannot create a temporary folder", parent.display()))?;
    for (name, bytes) in FILES {
        let path = staging.path().join(name);
        std::fs::write(&path, bytes).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    if dir.exists() {
        // A damaged earlier copy: replace it.
        std::fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot remove a damaged copy", dir.display()))?;
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, &dir) {
        let _ = std::fs::remove_dir_all(&staged);
        // Another process may have installed it meanwhile.
        if Bundle::open(&dir).is_err() {
            return Err(anyhow!("{}: cannot install the default model: {e}", dir.display()));
        }
    }
    Bundle::open(&dir).map_err(|e| anyhow!("the built-in default model is damaged: {e}"))?;
    Ok(dir)
}
