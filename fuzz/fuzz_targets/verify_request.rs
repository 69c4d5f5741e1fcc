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
                
                    portcullis::verify::mac::SecretEncoding::Ed25519Hex => "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
                    portcullis::verify::mac::SecretEncoding::Ed25519Base64 => {
                        "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="
                    }
                    portcullis::verify::mac::SecretEncoding::SpkiBase64 => {
                        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+aAlWsEGHwnmaSkk7YvJz9ZswGimqegmxMq/oaTXB/zZcBcYxyRAzcmv6NvmcJnBkmfatFxTBvX7gBREbQAubg=="
                    }
                    // The RSA test key of tests/vectors/gen_asym.py, on one line.
                    portcullis::verify::mac::SecretEncoding::Pem => "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0fLUdU2jF+JRtuCd3MuC\npZuSN+0uTZMhMZBUtoSOps8R3FFIr0MpQ/Cp6heOBDs2ze2Dn8+QGqCRbdBN2RfS\nWdut9dSLhYVoikuHIxwGlkFWBQ7ULs20Cc1LkW6FWyeuQuLabOjx8ZaJTQ+rHQ27\n9Bqo1DQ965HtXFTxnRSmR7iOmVq+y3CAiv9pP1sNze/T7FZ6kyY1dYonFXtCmnK/\nSIJSDwa0jBNg9Q+la1hPyaxzus2sfkaGjNFW+cJkIpV5jR0oqJa7HBML3tK/Ll78\nns6Qt/NuiLTZJHqwqO/a357+KZxHbOXGK/Njihp8aQNKP/bi9D/XiQGvbhzhmzrb\nLwIDAQAB\n-----END PUBLIC KEY-----",
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
