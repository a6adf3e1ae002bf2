//! Where medico keeps what it downloads or computes once: pulled checkpoints and bundles, the built-in
//! model's bundle, slice embeddings.

use std::path::PathBuf;

/// `$MEDICO_CACHE_DIR`, else `$XDG_CACHE_HOME/medico`, else `~/.cache/medico`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MEDICO_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("medico");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("medico")
}
