//! Why a signature did not match, in words a person can act on: which header was read,
//! which secrets were tried, and what would have matched had something near been different
//! (another encoding, another header, the body alone, an expired secret, a re-serialised
//! body, another hash). For logs and `portcullis verify --explain`; never for the caller.

use super::mac::{Algorithm, Encoding, MacKey, MAX_DIGEST};
use super::template::Segment;
use super::{single, Input, Verifier};
use crate::profile::Canonical;

/// Decodes every candidate of a header value with `enc`, whatever its length.
fn decode_all(v: &Verifier, value: &str, enc: Encoding) -> Vec<Vec<u8>> {
    let Ok(parsed) = v.profile.header_format.parse(value) else { return Vec::new() };
    parsed
        .signatures()
        .iter()
        .filter_map(|c| {
            let mut buf = [0u8; MAX_DIGEST + 8];
            enc.decode(c.as_bytes(), &mut buf).map(|n| buf[..n].to_vec())
        })
        .collect()
}

/// Lines explaining a failed verification of `input`.
pub fn diagnose(v: &Verifier, input: &Input<'_>) -> Vec<String> {
    let p = &*v.profile;
    let mut out = Vec::new();
    if p.canonical == Some(Canonical::Adyen)
        || p.signature_json.is_some()
        || p.algorithm == Algorithm::Ed25519
    {
        out.push(format!("signature read from {}", p.signature_place()));
        for (i, e) in v.expires.iter().enumerate() {
            if e.is_some_and(|e| input.now >= e) {
                out.push(format!("secret {i} has expired and was not tried"));
            }
        }
        return out;
    }

    // Which header was read.
    let mut read = None;
    for name in &p.headers {
        match single(input.headers, name) {
            Ok(Some(value)) => {
                read = Some((name.clone(), value.to_str().unwrap_or("").to_string()));
                break;
            }
            Ok(None) => {}
            Err(e) => {
                out.push(e.to_string());
                return out;
            }
        }
    }
    let Some((name, value)) = read else {
        out.push(format!("no signature header: looked for {}", p.signature_place()));
        let near: Vec<&str> = input
            .headers
            .keys()
            .map(|k| k.as_str())
            .filter(|k| k.contains("sig") || k.contains("hmac"))
            .collect();
        if !near.is_empty() {
            out.push(format!("headers present that may hold a signature: {}", near.join(", ")));
        }
        return out;
    };
    out.push(format!(
        "read header {name} ({} format, {} {})",
        match p.header_format.format {
            super::header::Format::Raw => "raw",
            super::header::Format::KeyValue => "key-value",
            super::header::Format::Versioned => "versioned",
        },
        p.algorithm.name(),
        p.encoding.name()
    ));
    match p.header_format.parse(&value) {
        Err(e) => {
            out.push(e.to_string());
            return out;
        }
        Ok(parsed) => out.push(format!("{} signature value(s) in the header", parsed.signatures().len())),
    }
    let active: Vec<usize> = v.active_keys(input.now).map(|(i, _)| i).collect();
    out.push(format!("tried secret(s) {:?} of {}", active, v.keys.len()));

    let ts_owned = v
        .timestamp_value(input, p.header_format.parse(&value).ok().and_then(|x| x.timestamp))
        .ok()
        .flatten()
        .map(|c| c.into_owned())
        .unwrap_or_default();
    let id_owned = match &p.id {
        crate::profile::IdSource::Header(h) => {
            single(input.headers, h).ok().flatten().and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
        }
        _ => String::new(),
    };
    let payload_with = |body: &[u8]| -> Vec<u8> {
        let mut out = Vec::new();
        for s in p.payload.segments() {
            match s {
                Segment::Literal(b) => out.extend_from_slice(b),
                Segment::Body => out.extend_from_slice(body),
                Segment::Timestamp => out.extend_from_slice(ts_owned.as_bytes()),
                Segment::Id => out.extend_from_slice(id_owned.as_bytes()),
                Segment::Method => out.extend_from_slice(input.method.as_str().as_bytes()),
                Segment::Url => out.extend_from_slice(input.url.as_bytes()),
                Segment::Json(_) => {}
            }
        }
        out
    };
    let expected = decode_all(v, &value, p.encoding);
    let matches = |alg: Algorithm, cands: &[Vec<u8>], payload: &[u8]| -> Option<usize> {
        (0..v.raw.len()).find(|&i| {
            let d = MacKey::new(alg, &v.raw[i]).digest([payload]);
            cands.iter().any(|c| d.ct_eq(c))
        })
    };
    let normal = payload_with(input.body);
    let mut hints = Vec::new();

    // A secret that would match but has expired.
    if let Some(i) = matches(p.algorithm, &expected, &normal) {
        if !active.contains(&i) {
            hints.push(format!("secret {i} matches, but it has expired: renew the secrets of this route"));
        }
    }
    // Another encoding of the same digest.
    let other = match p.encoding {
        Encoding::Hex => Encoding::Base64,
        Encoding::Base64 => Encoding::Hex,
    };
    if let Some(i) = matches(p.algorithm, &decode_all(v, &value, other), &normal) {
        hints.push(format!(
            "secret {i} matches if the signature is read as {}: the sender encodes it differently from the profile ({})",
            other.name(),
            p.encoding.name()
        ));
    }
    // Another hash.
    for alg in [Algorithm::HmacSha1, Algorithm::HmacSha256, Algorithm::HmacSha512] {
        if alg != p.algorithm {
            if let Some(i) = matches(alg, &expected, &normal) {
                hints.push(format!("secret {i} matches with {}: the sender hashes differently", alg.name()));
            }
        }
    }
    // The body alone, when the template signs more than the body.
    if p.payload.segments() != [Segment::Body] {
        if let Some(i) = matches(p.algorithm, &expected, input.body) {
            hints.push(format!(
                "secret {i} matches the body alone: the sender does not sign \"{}\"",
                p.payload.as_str()
            ));
        }
    }
    // The signature in another header.
    for (hname, hvalue) in input.headers.iter() {
        if *hname == name {
            continue;
        }
        let Ok(s) = hvalue.to_str() else { continue };
        if let Some(i) = matches(p.algorithm, &decode_all(v, s, p.encoding), &normal) {
            hints.push(format!(
                "secret {i} matches the value of header {hname}: add it to the profile's header aliases"
            ));
        }
    }
    // A body re-serialised on the way (whitespace, key order, a trailing newline).
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(input.body) {
        let variants = [
            serde_json::to_vec(&doc).unwrap_or_default(),
            serde_json::to_vec_pretty(&doc).unwrap_or_default(),
        ];
        for body in variants.iter().filter(|b| b.as_slice() != input.body) {
            if let Some(i) = matches(p.algorithm, &expected, &payload_with(body)) {
                hints.push(format!(
                    "secret {i} matches the body re-serialised: something between the provider and the gateway changed whitespace or key order; the raw bytes must pass untouched"
                ));
                break;
            }
        }
    }
    for body in [input.body.strip_suffix(b"\n").unwrap_or(input.body).to_vec(), [input.body, b"\n"].concat()]
    {
        if body != input.body {
            if let Some(i) = matches(p.algorithm, &expected, &payload_with(&body)) {
                hints.push(format!("secret {i} matches if a trailing newline is added or removed"));
            }
        }
    }
    if hints.is_empty() {
        hints.push(
            "nothing near matches: check that the route's secrets are this endpoint's signing secrets".into(),
        );
    }
    out.extend(hints);
    out
}
