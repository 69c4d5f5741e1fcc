//! Form bodies (url-encoded, and multipart with a fixed boundary) on arbitrary bytes: an error
//! or fields, never a panic; a field read twice is always refused.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::verify::form::Form;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    let ct = if kind & 1 == 0 { "application/x-www-form-urlencoded" } else { "multipart/form-data; boundary=B" };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if let Ok(form) = Form::parse(&headers, body) {
        for name in ["token", "timestamp", "signature", "a"] {
            let _ = form.get(name);
        }
        if let Ok(sorted) = form.sorted() {
            assert!(sorted.windows(2).all(|w| w[0].0 < w[1].0), "sorted and unique");
        }
    }
});
