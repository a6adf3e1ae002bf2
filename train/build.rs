//! Writes libtorch's lib folder into the RUNPATH of binaries and tests, so they start without
//! LD_LIBRARY_PATH on the machine that built them; compiles the C++ shim that reaches libtorch's c10d Gloo
//! process groups (`src/distributed/shim.cpp`) against the libtorch tch links and gloo's headers
//! (`.deps/gloo`, from scripts/setup.sh; `MEDICO_GLOO_INCLUDE` elsewhere).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/distributed/shim.cpp");
    println!("cargo:rerun-if-env-changed=MEDICO_GLOO_INCLUDE");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let libtorch = PathBuf::from(&lib).join("..");
    let gloo = std::env::var_os("MEDICO_GLOO_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/gloo"));
    if !gloo.join("gloo/config.h").is_file() {
        panic!(
            "gloo's headers are missing at {} (run scripts/setup.sh, or set MEDICO_GLOO_INCLUDE)",
            gloo.display()
        );
    }
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("src/distributed/shim.cpp")
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .include(&gloo)
        .define("USE_C10D_GLOO", None)
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag("-w")
        .compile("medico_c10d_shim");
}
