//! Property tests over every built-in profile: what is signed verifies, and any single flipped
//! bit in the signed body, the signature or the signed timestamp does not.

use base64::Engine;
use http::{HeaderMap, HeaderName, Method};
use portcullis::verify::mac::{Encoding, SecretEncoding};
use portcullis::verify::profile::{Canonical, Profile, ProfileSet, TimestampSource};
use portcullis::verify::{Input, Secret, Verifier};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const NOW: u64 = 1_796_025_600;
const URL: &str = "https://hooks.example.com/x";

/// A (verifying, signing) pair; `None` for public keys portcullis cannot sign with.
fn secrets(p: &Profile) -> Option<(String, String)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    Some(match p.secret {
        SecretEncoding::Raw => ("prop-secret".into(), "prop-secret".into()),
        SecretEncoding::WhsecBase64 => ("whsec_cHJvcC1zZWNyZXQ=".into(), "whsec_cHJvcC1zZWNyZXQ=".into()),
        SecretEncoding::Hex => ("0badc0de".into(), "0badc0de".into()),
        SecretEncoding::Ed25519 => {
            let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
            (
                format!("whpk_{}", b64.encode(sk.verifying_key().as_bytes())),
                format!("whsk_{}", b64.encode(sk.to_bytes())),
            )
        }
        SecretEncoding::Ed25519Hex
        | SecretEncoding::Ed25519Base64
        | SecretEncoding::SpkiBase64
        | SecretEncoding::Pem => return None,
    })
}

fn verifier(p: &Profile, s: &str) -> Verifier {
    Verifier::new(p.clone().into(), &[Secret::from(s.to_string())], None).unwrap()
}

fn header_map(list: &[(String, String)]) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    for (k, v) in list {
        h.append(HeaderName::from_bytes(k.as_bytes()).ok()?, v.parse().ok()?);
    }
    Some(h)
}

fn verifies(v: &Verifier, headers: &[(String, String)], body: &[u8]) -> bool {
    let Some(h) = header_map(headers) else { return false };
    v.verify(&Input { method: &Method::POST, url: URL, headers: &h, body, now: NOW }).is_ok()
}

/// A body the profile can sign, from random material.
fn body_for(p: &Profile, raw: &[u8], word: &str) -> Vec<u8> {
    if let Some(TimestampSource::Json(ptr)) = p.timestamp.as_ref().map(|t| &t.source) {
        let key = ptr.as_str().trim_start_matches('/');
        return format!(r#"{{"{key}":{},"r":"{word}"}}"#, NOW * 1000).into_bytes();
    }
    if matches!(p.canonical, Some(Canonical::Twilio | Canonical::Mandrill)) {
        return format!("Body={word}&From=x{word}").into_bytes();
    }
    if p.body == portcullis::verify::profile::BodyFormat::Json {
        return format!(r#"[{{"eventId":"{word}","raw":"{}"}}]"#, hex::encode(raw)).into_bytes();
    }
    raw.to_vec()
}

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let i = bit / 8 % out.len();
    out[i] ^= 1 << (bit % 8);
    out
}

/// Replaces the (first) signature value in the signature header by `f(decoded)`, re-encoded.
fn with_signature(
    p: &Profile,
    headers: &[(String, String)],
    f: impl Fn(&[u8]) -> Vec<u8>,
) -> Vec<(String, String)> {
    let name = p.headers[0].as_str();
    headers
        .iter()
        .map(|(k, v)| {
            if !k.eq_ignore_ascii_case(name) {
                return (k.clone(), v.clone());
            }
            let parsed = p.header_format.parse(v).unwrap();
            let sig = parsed.signatures()[0];
            let mut buf = [0u8; 72];
            let n = p.encoding.decode(sig.as_bytes(), &mut buf).unwrap();
            let new = match p.encoding {
                Encoding::Hex => hex::encode(f(&buf[..n])),
                Encoding::Base64 | Encoding::Base64url | Encoding::Plain => p.encoding.encode(&f(&buf[..n])),
            };
            (k.clone(), v.replacen(sig, &new, 1))
        })
        .collect()
}

#[test]
fn every_profile_signs_then_verifies_and_refuses_single_bit_flips() {
    let set = ProfileSet::builtin();
    let mut covered = 0;
    // Shared-token schemes sign nothing (see verify::token's tests and their vectors).
    for p in set.iter().filter(|p| !p.headers.is_empty() && !p.algorithm.is_shared_secret()) {
        let Some((verify_with, sign_with)) = secrets(p) else { continue };
        let v = verifier(p, &verify_with);
        let signer = verifier(p, &sign_with);
        let signs_body = p.payload.uses(&portcullis::verify::template::Segment::Body);
        let signed_ts = p.timestamp.as_ref().is_some_and(|t| t.check)
            && !matches!(p.timestamp.as_ref().map(|t| &t.source), Some(TimestampSource::Json(_)));
        let mut runner = TestRunner::new(Config { cases: 48, ..Config::default() });
        let strategy = (proptest::collection::vec(any::<u8>(), 1..300), "[a-zA-Z0-9]{1,24}", any::<usize>());
        runner
            .run(&strategy, |(raw, word, bit)| {
                let body = body_for(p, &raw, &word);
                let headers: Vec<(String, String)> = signer
                    .sign(&Method::POST, URL, &body, "msg_prop", NOW)
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                prop_assert!(verifies(&v, &headers, &body), "{}: signed output must verify", p.name);
                if signs_body {
                    let flipped = flip(&body, bit);
                    prop_assert!(!verifies(&v, &headers, &flipped), "{}: body bit {} flipped", p.name, bit);
                }
                // A JWT is not one encoded signature; its refusals are jwt.rs's tests.
                if p.jwt.is_none() {
                    let sig_bit = bit % (p.algorithm.signature_len().end() * 8);
                    let bad = with_signature(p, &headers, |d| flip(d, sig_bit));
                    prop_assert!(!verifies(&v, &bad, &body), "{}: signature bit {} flipped", p.name, sig_bit);
                }
                if signed_ts {
                    // As the header carries it (unix seconds, milliseconds or RFC 3339).
                    let ts = p.timestamp.as_ref().map(|t| t.unit).unwrap_or_default().render(NOW);
                    let flipped_ts =
                        String::from_utf8(flip(ts.as_bytes(), bit % (ts.len() * 8))).unwrap_or_default();
                    if flipped_ts != ts {
                        let bad: Vec<(String, String)> = headers
                            .iter()
                            .map(|(k, val)| (k.clone(), val.replacen(&ts, &flipped_ts, 1)))
                            .collect();
                        prop_assert!(
                            !verifies(&v, &bad, &body),
                            "{}: timestamp flipped to {:?}",
                            p.name,
                            flipped_ts
                        );
                    }
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        covered += 1;
    }
    assert!(covered >= 25, "only {covered} header-signed profiles");
}

/// Mailgun and Adyen sign fields inside the body: flipping a bit of a signed field fails.
#[test]
fn body_signed_profiles_refuse_flips_in_signed_fields() {
    let set = ProfileSet::builtin();
    let key = hex::decode("0badc0de").unwrap();
    let adyen = verifier(set.get("adyen").unwrap(), "0badc0de");
    let mailgun = verifier(set.get("mailgun").unwrap(), "prop-secret");
    let mut runner = TestRunner::new(Config { cases: 64, ..Config::default() });
    runner
        .run(&("[A-Z0-9]{4,16}", "[a-f0-9]{20,50}", any::<usize>()), |(psp, token, bit)| {
            // Adyen.
            let item = serde_json::json!({"pspReference": psp, "merchantAccountCode": "M", "merchantReference": "R",
                "amount": {"value": 100, "currency": "EUR"}, "eventCode": "AUTHORISATION", "success": "true"});
            let s = portcullis::verify::canonical::adyen_signing_string(&item);
            let mac = portcullis::verify::mac::MacKey::new(portcullis::verify::mac::Algorithm::HmacSha256, &key);
            let sig = base64::engine::general_purpose::STANDARD.encode(mac.digest([s.as_bytes()]).as_bytes());
            let body = |psp: &str| {
                let mut it = item.clone();
                it["pspReference"] = psp.into();
                it["additionalData"] = serde_json::json!({ "hmacSignature": sig });
                serde_json::to_vec(&serde_json::json!({"notificationItems": [{"NotificationRequestItem": it}]})).unwrap()
            };
            prop_assert!(verifies(&adyen, &[], &body(&psp)));
            let flipped = String::from_utf8(flip(psp.as_bytes(), bit)).unwrap_or_default();
            if flipped != psp && !flipped.contains(['"', '\\']) && flipped.chars().all(|c| !c.is_control()) {
                prop_assert!(!verifies(&adyen, &[], &body(&flipped)));
            }
            // Mailgun.
            let ts = NOW.to_string();
            let mac = portcullis::verify::mac::MacKey::new(portcullis::verify::mac::Algorithm::HmacSha256, b"prop-secret");
            let sig = hex::encode(mac.digest([ts.as_bytes(), token.as_bytes()]).as_bytes());
            let body = |token: &str| {
                serde_json::to_vec(&serde_json::json!({"signature": {"timestamp": ts, "token": token, "signature": sig},
                    "event-data": {"id": "e"}}))
                .unwrap()
            };
            prop_assert!(verifies(&mailgun, &[], &body(&token)));
            let flipped = String::from_utf8(flip(token.as_bytes(), bit)).unwrap_or_default();
            if flipped != token && !flipped.contains(['"', '\\']) && flipped.chars().all(|c| !c.is_control()) {
                prop_assert!(!verifies(&mailgun, &[], &body(&flipped)));
            }
            Ok(())
        })
        .unwrap();
}
