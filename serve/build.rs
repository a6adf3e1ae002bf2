//! Embeds the web annotator (`web/dist`, built from `web/src` by `web/build.sh`, which scripts/setup.sh
//! runs) into the server, so that `medico-cli serve` works offline from one binary.

use std::path::PathBuf;

/// The built files the server serves.
const ASSETS: [&str; 4] = [
    "index.html",
    "annotator.js",
    "annotator.css",
    "THIRD_PARTY_LICENSES.txt",
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dist = manifest.join("../web/dist");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in ASSETS {
        let source = dist.join(name);
        println!("cargo:rerun-if-changed={}", source.display());
        if let Err(e) = std::fs::copy(&source, out.join(name)) {
            panic!(
                "{}: {e}; the web annotator is not built: run `bash web/build.sh` (scripts/setup.sh does it; it \
                 needs Node 20 and npm)",
                source.display()
            );
        }
    }
}
