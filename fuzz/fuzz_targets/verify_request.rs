//! Every built-in profile's verification path (header parsing, decoding, templates, JSON
//! pointers, canonicalisers, ids) on arbitrary header values and bodies: never a panic.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use portcullis::verify::profile::ProfileSet;
use portcullis::verify::{Input, Secret, Verifier};
use std::sync::OnceLock;

fn verifiers() -> &'static Vec<Verifier> {
    static V: OnceLock<Vec<Verifier>> = OnceLock::new();
    V.get_or_init(|| {
        ProfileSet::builtin()
            .iter()
            .filter_map(|p| {
                let secret = match p.secret {
                    portcullis::verify::mac::SecretEncoding::Raw => "fuzz-secret",
                    portcullis::verify::mac::SecretEncoding::WhsecBase64 => "whsec_ZnV6eg==",
                    portcullis::verify::mac::SecretEncoding::Hex => "00ff",
                    portcullis::verify::mac::SecretEncoding::Ed25519 => {
                        "whpk_O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="
                    }
                };
                Verifier::new(p.clone(), &[Secret::from(secret.to_string())], None).ok()
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    // Layout: [profile index][split][header value bytes..split][body..]
    if data.len() < 2 {
        return;
    }
    let vs = verifiers();
    let v = &vs[data[0] as usize % vs.len()];
    let rest = &data[2..];
    let split = (data[1] as usize).min(rest.len());
    let (value, body) = rest.split_at(split);
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(value) {
        let p = v.profile();
        for name in p.headers.iter().take(1) {
            headers.insert(name.clone(), value.clone());
        }
        for name in ["webhook-id", "webhook-timestamp", "x-slack-request-timestamp", "x-hubspot-request-timestamp"] {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    // No Content-Type, a url-encoded form or a multipart form, for the form-reading schemes.
    let content_type = match data[0] as usize / vs.len() % 3 {
        0 => None,
        1 => Some("application/x-www-form-urlencoded"),
        _ => Some("multipart/form-data; boundary=B"),
    };
    if let Some(ct) = content_type {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    let input = Input { method: &Method::POST, url: "https://fuzz.example/x?bodySHA256=00", headers: &headers, body, now: 1_700_000_000 };
    let _ = v.verify(&input);
    let _ = v.event_id(&headers, body);
    let _ = v.replay_nonce(&headers, body);
    let _ = portcullis::verify::diagnose::diagnose(v, &input);
});
