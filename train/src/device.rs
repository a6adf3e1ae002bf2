//! Device selection for one binary that runs on CPU machines and GPU machines alike.
//!
//! A default build links only `libtorch_cpu`; libtorch's CUDA backend is `dlopen`ed at start-up when it
//! is present (the GPU machine's torch install), before any CUDA query, because libtorch caches its CUDA
//! hooks on first use.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use tch::Device;

/// Which device the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DeviceChoice {
    /// The CPU.
    Cpu,
    /// The first CUDA device; an error when none is usable.
    Cuda,
    /// CUDA when usable, else the CPU.
    Auto,
}

/// Why CUDA cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeviceError {
    /// libtorch's CUDA library did not load.
    #[error("CUDA requested but libtorch's CUDA backend is not loadable: {0}")]
    Backend(String),
    /// The library loaded but sees no device.
    #[error("CUDA requested but no CUDA device is visible")]
    NoDevice,
}

/// The outcome of loading the CUDA backend, kept for every later caller (the reason as `dlerror` gave it).
static CUDA_BACKEND: OnceLock<Result<(), DeviceError>> = OnceLock::new();

/// Loads libtorch's CUDA backend once (`libtorch_cuda.so` through the RUNPATH or `LD_LIBRARY_PATH`).
/// Returns why it is unavailable otherwise. The library is never closed.
pub fn load_cuda_backend() -> Result<(), DeviceError> {
    CUDA_BACKEND
        .get_or_init(|| {
            let name = CString::new("libtorch_cuda.so").expect("no NUL in a constant");
            // SAFETY: dlopen with a valid C string; the handle is intentionally leaked so that the
            // CUDA kernels stay registered for the life of the process.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror returns NULL or a valid C string owned by libc.
                let err = unsafe { libc::dlerror() };
                return Err(DeviceError::Backend(if err.is_null() {
                    "dlopen(libtorch_cuda.so) failed".to_string()
                } else {
                    // SAFETY: non-null pointer from dlerror, read before any other dl call.
                    unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned()
                }));
            }
            Ok(())
        })
        .clone()
}

/// Resolves a device choice; `Cuda` without a usable GPU is an error naming the reason.
pub fn select_device(choice: DeviceChoice) -> Result<Device, DeviceError> {
    if choice == DeviceChoice::Cpu {
        return Ok(Device::Cpu);
    }
    let loaded = load_cuda_backend();
    let available = loaded.is_ok() && tch::Cuda::is_available();
    match (choice, available) {
        (_, true) => Ok(Device::Cuda(0)),
        (DeviceChoice::Auto, false) => Ok(Device::Cpu),
        _ => Err(match loaded {
            Err(e) => e,
            Ok(()) => DeviceError::NoDevice,
        }),
    }
}
