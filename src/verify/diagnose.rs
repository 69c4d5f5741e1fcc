//! Why a signature did not match, in words a person can act on: which header was read,
//! which secrets were tried, and what would have matched had something near been different
//! (another encoding, another header, the body alone, an expired secret, a re-serialised
//! body, another hash). For logs and `portcullis verify --explain`; never for the caller.
//!
//! One diagnosis is bounded: each what-if payload is hashed once per secret and compared with
//! every candidate (so header count costs comparisons, not MACs), at most [`MAX_HEADERS`]
//! other headers are read, and a body over [`MAX_WHAT_IF_BODY`] gets no re-hashed what-ifs,
//! which leaves one MAC per secret, as much as verifying it.

use super::mac::{Algorithm, Digest, Encoding, MacKey, MAX_DIGEST};
use super::profile::Canonical;
use super::template::Segment;
use super::{single, Input, Verifier};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// Other headers whose values are tried as the signature, at most.
pub const MAX_HEADERS: usize = 32;

/// Bodies longer than this are not re-hashed as variants (another hash, the body alone,
/// re-serialised, a newline more or less).
pub const MAX_WHAT_IF_BODY: usize = 64 * 1024;

/// A diagnosis: its lines, and how many MACs it computed.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    pub lines: Vec<String>,
    pub macs: usize,
}

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
    diagnose_counted(v, input).lines
}

/// As [`diagnose`], counting the MACs computed.
pub fn diagnose_counted(v: &Verifier, input: &Input<'_>) -> Diagnosis {
    let mut macs = 0;
    let lines = explain(v, input, &mut macs);
    Diagnosis { lines, macs }
}

fn explain(v: &Verifier, input: &Input<'_>, macs: &mut usize) -> Vec<String> {
    let p = &*v.profile;
    let mut out = Vec::new();
    if p.canonical == Some(Canonical::Adyen)
        || p.signature_json.is_some()
        || p.algorithm.is_public_key()
        || p.jwt.is_some()
        || p.algorithm.is_shared_secret()
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
            super::header::Format::Positional => "positional",
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
        super::profile::IdSource::Header(h) => super::first_of(input.headers, h)
            .ok()
            .flatten()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    };
    // The payload with `body` in the body's place, as parts (nothing joined or copied).
    let fixed = Fixed {
        ts: ts_owned.as_bytes(),
        id: id_owned.as_bytes(),
        method: input.method.as_str().as_bytes(),
        url: input.url.as_bytes(),
    };
    let segments = p.payload.segments();
    // One MAC per secret for a payload, compared with any number of candidates.
    let digests = |alg: Algorithm, parts: &[&[u8]], macs: &mut usize| -> Vec<Digest> {
        *macs += v.raw.len();
        v.raw.iter().map(|k| MacKey::new(alg, k).digest(parts.iter().copied())).collect()
    };
    let first_match =
        |ds: &[Digest], cands: &[Vec<u8>]| ds.iter().position(|d| cands.iter().any(|c| d.ct_eq(c)));
    let expected = decode_all(v, &value, p.encoding);
    let normal = digests(p.algorithm, &fixed.parts(segments, input.body), macs);
    let mut hints = Vec::new();

    // A secret that would match but has expired.
    if let Some(i) = first_match(&normal, &expected) {
        if !active.contains(&i) {
            hints.push(format!("secret {i} matches, but it has expired: renew the secrets of this route"));
        }
    }
    // Another encoding of the same digest.
    let other = match p.encoding {
        Encoding::Hex => Encoding::Base64,
        // Shared tokens are never diagnosed this far (see `explain`).
        Encoding::Base64 | Encoding::Base64url | Encoding::Plain => Encoding::Hex,
    };
    if let Some(i) = first_match(&normal, &decode_all(v, &value, other)) {
        hints.push(format!(
            "secret {i} matches if the signature is read as {}: the sender encodes it differently from the profile ({})",
            other.name(),
            p.encoding.name()
        ));
    }
    // The signature in another header (the same digests, compared with each value).
    let mut others = 0;
    for (hname, hvalue) in input.headers.iter() {
        if *hname == name {
            continue;
        }
        let Ok(s) = hvalue.to_str() else { continue };
        others += 1;
        if others > MAX_HEADERS {
            hints.push(format!("only the first {MAX_HEADERS} other headers were tried as the signature"));
            break;
        }
        if let Some(i) = first_match(&normal, &decode_all(v, s, p.encoding)) {
            hints.push(format!(
                "secret {i} matches the value of header {hname}: add it to the profile's header aliases"
            ));
        }
    }
    if input.body.len() > MAX_WHAT_IF_BODY {
        hints.push(format!(
            "the body is over {} KiB: other hashes, re-serialisations and newlines were not tried",
            MAX_WHAT_IF_BODY / 1024
        ));
        if hints.len() == 1 {
            hints.insert(0, "nothing near matches among the checks made".into());
        }
        out.extend(hints);
        return out;
    }
    // Another hash.
    for alg in [Algorithm::HmacSha1, Algorithm::HmacSha256, Algorithm::HmacSha512] {
        if alg != p.algorithm {
            if let Some(i) = first_match(&digests(alg, &fixed.parts(segments, input.body), macs), &expected) {
                hints.push(format!("secret {i} matches with {}: the sender hashes differently", alg.name()));
            }
        }
    }
    // The body alone, when the template signs more than the body.
    if p.payload.segments() != [Segment::Body] {
        if let Some(i) = first_match(&digests(p.algorithm, &[input.body], macs), &expected) {
            hints.push(format!(
                "secret {i} matches the body alone: the sender does not sign \"{}\"",
                p.payload.as_str()
            ));
        }
    }
    // A body re-serialised on the way (whitespace, key order), in the body's own key order
    // and sorted, compact, pretty or spaced.
    'variants: for (variant, body) in reserialisations(input.body) {
        if body.as_slice() == input.body {
            continue;
        }
        if let Some(i) = first_match(&digests(p.algorithm, &fixed.parts(segments, &body), macs), &expected) {
            hints.push(format!(
                "secret {i} matches the body re-serialised ({variant}): something between the provider and the gateway changed whitespace or key order; the raw bytes must pass untouched"
            ));
            break 'variants;
        }
    }
    for body in [input.body.strip_suffix(b"\n").unwrap_or(input.body).to_vec(), [input.body, b"\n"].concat()]
    {
        if body != input.body {
            if let Some(i) =
                first_match(&digests(p.algorithm, &fixed.parts(segments, &body), macs), &expected)
            {
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

/// The parts of a payload other than the body, for one request.
struct Fixed<'a> {
    ts: &'a [u8],
    id: &'a [u8],
    method: &'a [u8],
    url: &'a [u8],
}

impl Fixed<'_> {
    fn parts<'b>(&'b self, segments: &'b [Segment], body: &'b [u8]) -> Vec<&'b [u8]> {
        segments
            .iter()
            .filter_map(|s| match s {
                Segment::Literal(b) => Some(&b[..]),
                Segment::Body => Some(body),
                Segment::Timestamp => Some(self.ts),
                Segment::Id => Some(self.id),
                Segment::Method => Some(self.method),
                Segment::Url => Some(self.url),
                Segment::Json(_) | Segment::Form(_) => None,
            })
            .collect()
    }
}

/// A JSON value with its objects' keys in the order the body gave them.
enum Node {
    /// A number, `true`, `false` or `null`, as written; a string, re-escaped.
    Scalar(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// An object's entries in document order, each value still raw.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn node(raw: &str) -> Option<Node> {
    Some(match raw.as_bytes().first()? {
        b'{' => Node::Object(
            serde_json::from_str::<Entries>(raw)
                .ok()?
                .0
                .into_iter()
                .map(|(k, v)| Some((k, node(v.get())?)))
                .collect::<Option<_>>()?,
        ),
        b'[' => Node::Array(
            serde_json::from_str::<Vec<&RawValue>>(raw)
                .ok()?
                .into_iter()
                .map(|v| node(v.get()))
                .collect::<Option<_>>()?,
        ),
        b'"' => Node::Scalar(serde_json::to_string(&serde_json::from_str::<String>(raw).ok()?).ok()?),
        _ => Node::Scalar(raw.to_string()),
    })
}

impl Node {
    fn sort(&mut self) {
        match self {
            Node::Scalar(_) => {}
            Node::Array(items) => items.iter_mut().for_each(Node::sort),
            Node::Object(entries) => {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                entries.iter_mut().for_each(|(_, v)| v.sort());
            }
        }
    }

    /// Writes the value: `indent` spaces per level (none: on one line), with `item` between
    /// elements and `colon` between a key and its value on one line.
    fn write(&self, out: &mut String, indent: Option<usize>, depth: usize, item: &str, colon: &str) {
        let (open, close, len) = match self {
            Node::Scalar(s) => return out.push_str(s),
            Node::Array(a) => ('[', ']', a.len()),
            Node::Object(o) => ('{', '}', o.len()),
        };
        out.push(open);
        for i in 0..len {
            if i > 0 {
                out.push_str(if indent.is_some() { "," } else { item });
            }
            if let Some(n) = indent {
                out.push('\n');
                out.extend(std::iter::repeat_n(' ', n * (depth + 1)));
            }
            match self {
                Node::Array(a) => a[i].write(out, indent, depth + 1, item, colon),
                Node::Object(o) => {
                    out.push_str(&serde_json::to_string(&o[i].0).unwrap_or_default());
                    out.push_str(if indent.is_some() { ": " } else { colon });
                    o[i].1.write(out, indent, depth + 1, item, colon);
                }
                Node::Scalar(_) => {}
            }
        }
        if let (Some(n), true) = (indent, len > 0) {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
        out.push(close);
    }
}

/// The body as common serialisers would write it again, each named: keys in the body's
/// order and sorted; compact, spaced (`, ` and `: `) and pretty (2 and 4 spaces). Empty for a
/// body that is not JSON.
fn reserialisations(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let Ok(raw) = serde_json::from_slice::<&RawValue>(body) else { return Vec::new() };
    let Some(mut tree) = node(raw.get()) else { return Vec::new() };
    let styles: [(&str, Option<usize>, &str, &str); 4] = [
        ("compact", None, ",", ":"),
        ("spaced", None, ", ", ": "),
        ("pretty", Some(2), ",", ":"),
        ("pretty, 4 spaces", Some(4), ",", ":"),
    ];
    let mut out = Vec::new();
    for order in ["keys in the body's order", "keys sorted"] {
        if order == "keys sorted" {
            tree.sort();
        }
        for (style, indent, item, colon) in styles {
            let mut s = String::new();
            tree.write(&mut s, indent, 0, item, colon);
            out.push((format!("{style}, {order}"), s.into_bytes()));
        }
    }
    out
}
