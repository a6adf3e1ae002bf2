//! A prompts file's bytes through its parser.
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = medico_io::prompts_file::parse_prompts(Path::new("prompts.json"), data);
});
