//! The provider profile loader on arbitrary text: an error naming the file, or a profile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::verify::profile::Profile;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Err(e) = Profile::from_yaml("fuzz.yaml", s) {
            assert!(e.to_string().starts_with("fuzz.yaml: "));
        }
    }
});
