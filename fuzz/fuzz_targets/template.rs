//! Payload template parsing on arbitrary text: an error or a template, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::verify::template::Template;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(t) = Template::parse(s) {
            assert_eq!(t.as_str(), s);
        }
    }
});
