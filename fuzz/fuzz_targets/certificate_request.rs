//! The certificate-URL schemes (PayPal, Amazon SNS) on arbitrary header values and bodies:
//! reading the request and pinning its certificate URL (`certificate::prepare`), and parsing
//! a certificate file (`SigningCert::from_pem`): never a panic, nothing fetched.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use portcullis::verify::certificate::{self, PinnedOnly, SigningCert};
use portcullis::verify::profile::ProfileSet;
use portcullis::verify::{Input, Secret, Verifier};
use std::sync::OnceLock;

fn verifiers() -> &'static [Verifier; 2] {
    static V: OnceLock<[Verifier; 2]> = OnceLock::new();
    V.get_or_init(|| {
        let set = ProfileSet::builtin();
        let v = |name: &str, secret: &str| {
            Verifier::new(set.get(name).unwrap().clone(), &[Secret::from(secret.to_string())], None).unwrap()
        };
        [v("paypal", "WH-1"), v("amazon-sns", "arn:aws:sns:us-east-1:123456789012:T")]
    })
}

fuzz_target!(|data: &[u8]| {
    // Layout: [scheme][split][header value bytes..split][body..]
    if data.len() < 2 {
        return;
    }
    let v = &verifiers()[data[0] as usize % 2];
    let rest = &data[2..];
    let split = (data[1] as usize).min(rest.len());
    let (value, body) = rest.split_at(split);
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(value) {
        for name in [
            "paypal-transmission-id",
            "paypal-transmission-time",
            "paypal-transmission-sig",
            "paypal-cert-url",
            "paypal-auth-algo",
        ] {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    let input = Input { method: &Method::POST, url: "", headers: &headers, body, now: 1_796_025_600 };
    let _ = certificate::prepare(v, &input, &PinnedOnly);
    let _ = v.event_id(&headers, body);
    let rule = v.profile().certificate.as_ref().unwrap();
    let _ = SigningCert::from_pem(body, rule, &[], 1_796_025_600);
});
