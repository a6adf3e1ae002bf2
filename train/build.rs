//! Writes libtorch's lib folder into the RUNPATH of binaries and tests, so they start without
//! LD_LIBRARY_PATH on the machine that built them.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
