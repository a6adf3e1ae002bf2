//! End-to-end tests across medico's crates live in `tests/tests/`; this library only locates the shared
//! test data for them.

use std::path::PathBuf;

/// The `shared/` folder beside the checkout, or `$MEDICO_SHARED`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("MEDICO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}
