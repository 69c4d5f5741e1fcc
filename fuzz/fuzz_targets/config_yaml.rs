//! The gateway configuration loader on arbitrary text: an error naming the file, or a config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let env = |k: &str| (k == "SECRET").then(|| "s".to_string());
        if let Err(e) = Config::from_yaml("fuzz.yaml", s, Path::new("/nonexistent"), &env) {
            assert!(e.to_string().starts_with("fuzz.yaml: "));
        }
    }
});
