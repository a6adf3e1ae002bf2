//! Checkpoint bytes (safetensors, PyTorch zip, legacy pickle) through the importer, then architecture
//! inference from the shapes, as `checkpoint info` and `export` do.
#![no_main]

use medico_models::checkpoint::{shapes, state_dict_from_bytes};
use medico_models::SamConfig;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(state) = state_dict_from_bytes(data) {
        let _ = SamConfig::infer_from_shapes(&shapes(&state), None);
    }
});
