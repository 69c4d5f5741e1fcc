//! `portcullis providers`: the provider profiles known, as a table or as JSON.

use super::Usage;
use crate::verify::anyof::HeaderSet;
use crate::verify::profile::{Profile, ProfileSet};
use crate::verify::security::Security;
use http::{HeaderName, Method};
use std::path::Path;
use std::process::ExitCode;

pub fn run(json: bool, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut set = ProfileSet::builtin();
    if let Some(d) = dir {
        set.extend_from_dir(d).map_err(|e| Usage(e.to_string()))?;
    }
    if json {
        let list: Vec<ProfileJson<'_>> = set.iter().map(|p| ProfileJson::of(p)).collect();
        crate::outln!("{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 7]> = set
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.signature_place(),
                match &p.certificate {
                    Some(c) => c.algorithm().to_string(),
                    None => p.algorithm.name().to_string(),
                },
                p.encoding.name().to_string(),
                p.timestamp.as_ref().map(|t| t.describe()).unwrap_or_else(|| "none".into()),
                if ids_signed_string(p) { "sha256(signed string)".into() } else { p.id.describe() },
                Security::of(p).summary(),
            ]
        })
        .collect();
    let head = ["NAME", "HEADER", "ALGORITHM", "ENCODING", "TIMESTAMP", "ID", "PROTECTS"].map(String::from);
    let mut widths = [0usize; 7];
    for r in std::iter::once(&head).chain(rows.iter()) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&head).chain(rows.iter()) {
        let line: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        crate::outln!("{}", line.join("  ").trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One profile as `providers --json` prints it: every field of the scheme as data.
#[derive(serde::Serialize)]
struct ProfileJson<'a> {
    name: &'a str,
    title: &'a str,
    /// Where the scheme is documented.
    docs: Option<&'a str>,
    assumptions: &'a [String],
    methods: Vec<&'a str>,
    /// `null` for a certificate-URL scheme, whose `certificate` fixes what is signed.
    signature: Option<SignatureJson<'a>>,
    /// How the route's secrets are written.
    secret: crate::verify::mac::SecretEncoding,
    /// A certificate-URL scheme (`paypal`, `amazon-sns`) and the hosts its certificate may
    /// come from; `signature` is then `null`.
    certificate: Option<CertificateJson<'a>>,
    timestamp: Option<TimestampJson<'a>>,
    id: IdJson<'a>,
    /// A signed one-time value remembered to refuse replays: its JSON pointer in the body, or its form field.
    nonce: Option<&'a str>,
    handshake: Option<&'a crate::verify::profile::Handshake>,
    order_by: Option<&'a str>,
    /// What the scheme protects against: integrity, replay window, whether the id is signed.
    security: Security,
}

#[derive(serde::Serialize)]
struct SignatureJson<'a> {
    /// Header names looked in, in order (empty when the signature is in the body).
    headers: Vec<&'a str>,
    /// `first` (the first of `headers` present), `any-of` (a signature in any of them may
    /// match) or `numbered` (`headers[0]` stands for `<prefix>1`, `<prefix>2`, …).
    header_set: &'static str,
    /// JSON pointer of the signature inside the body.
    json: Option<&'a str>,
    /// The form field of the body that holds the signature.
    form: Option<&'a str>,
    /// The header in which the sender names the algorithm, and the names accepted.
    algorithm_header: Option<AlgorithmHeaderJson<'a>>,
    canonical: Option<crate::verify::profile::Canonical>,
    format: crate::verify::header::Format,
    prefix: Option<&'a str>,
    /// Between entries, and between key (or version) and value; `null` for a raw value.
    separator: Option<&'a str>,
    kv_separator: Option<&'a str>,
    /// Keys (key-value) or versions (versioned) whose values are signatures.
    keys: &'a [String],
    timestamp_key: Option<&'a str>,
    algorithm: crate::verify::mac::Algorithm,
    encoding: crate::verify::mac::Encoding,
    /// The signed payload's template.
    payload: &'a str,
}

#[derive(serde::Serialize)]
struct AlgorithmHeaderJson<'a> {
    header: &'a str,
    values: Vec<(&'a str, crate::verify::mac::Algorithm)>,
}

#[derive(serde::Serialize)]
struct CertificateJson<'a> {
    scheme: crate::verify::certificate::CertScheme,
    hosts: &'a [String],
}

#[derive(serde::Serialize)]
struct TimestampJson<'a> {
    /// `header`, `signature` (a key of the signature header), `json`, or `form` (the field named in `header`).
    source: &'static str,
    header: Option<&'a str>,
    json: Option<&'a str>,
    unit: crate::verify::profile::TimeUnit,
    tolerance_secs: u64,
    /// Whether it is held to the tolerance (only when the signature covers it).
    check: bool,
}

#[derive(serde::Serialize)]
struct IdJson<'a> {
    /// `header`, `json` (pointers joined with `:`), `body-sha256`, or `signed-string-sha256`
    /// (form schemes: the digest of what the signature covers, the same for every encoding).
    source: &'static str,
    header: Option<&'a str>,
    /// Other names of the id header, looked for in order after `header`.
    header_aliases: Vec<&'a str>,
    json: Vec<&'a str>,
}

impl<'a> ProfileJson<'a> {
    fn of(p: &'a Profile) -> Self {
        use crate::verify::header::Format;
        use crate::verify::profile::{IdSource, TimestampSource};
        let hf = &p.header_format;
        let raw = hf.format == Format::Raw;
        ProfileJson {
            name: &p.name,
            title: &p.title,
            docs: p.docs.as_deref(),
            assumptions: &p.assumptions,
            methods: p.methods.iter().map(Method::as_str).collect(),
            signature: p.certificate.is_none().then(|| SignatureJson {
                headers: p.headers.iter().map(HeaderName::as_str).collect(),
                header_set: match p.header_set {
                    HeaderSet::First => "first",
                    HeaderSet::AnyOf => "any-of",
                    HeaderSet::Numbered(_) => "numbered",
                },
                json: p.signature_json.as_ref().map(|j| j.as_str()),
                form: p.signature_form.as_deref(),
                algorithm_header: p.algorithm_header.as_ref().map(|a| AlgorithmHeaderJson {
                    header: a.header.as_str(),
                    values: a.names.iter().map(|(n, alg)| (n.as_str(), *alg)).collect(),
                }),
                canonical: p.canonical,
                format: hf.format,
                prefix: hf.prefix.as_deref(),
                separator: (!raw).then_some(hf.separator.as_str()),
                kv_separator: (!raw).then_some(hf.kv_separator.as_str()),
                keys: &hf.signature_keys,
                timestamp_key: hf.timestamp_key.as_deref(),
                algorithm: p.algorithm,
                encoding: p.encoding,
                payload: p.payload.as_str(),
            }),
            secret: p.secret,
            certificate: p
                .certificate
                .as_ref()
                .map(|c| CertificateJson { scheme: c.scheme, hosts: &c.hosts }),
            timestamp: p.timestamp.as_ref().map(|t| {
                let (source, header, json) = match &t.source {
                    TimestampSource::Header(h) => ("header", Some(h.as_str()), None),
                    TimestampSource::Signature => ("signature", None, None),
                    TimestampSource::Json(j) => ("json", None, Some(j.as_str())),
                    TimestampSource::Form(f) => ("form", Some(f.as_str()), None),
                };
                TimestampJson {
                    source,
                    header,
                    json,
                    unit: t.unit,
                    tolerance_secs: t.tolerance.as_secs(),
                    check: t.check,
                }
            }),
            id: match &p.id {
                IdSource::Header(h) => IdJson {
                    source: "header",
                    header: Some(h[0].as_str()),
                    header_aliases: h[1..].iter().map(HeaderName::as_str).collect(),
                    json: vec![],
                },
                IdSource::Json(ps) => IdJson {
                    source: "json",
                    header: None,
                    header_aliases: vec![],
                    json: ps.iter().map(|j| j.as_str()).collect(),
                },
                IdSource::BodySha256 if ids_signed_string(p) => IdJson {
                    source: "signed-string-sha256",
                    header: None,
                    header_aliases: vec![],
                    json: vec![],
                },
                IdSource::BodySha256 => {
                    IdJson { source: "body-sha256", header: None, header_aliases: vec![], json: vec![] }
                }
            },
            nonce: p.replay.as_ref().map(|j| j.as_str()).or(p.replay_form.as_deref()),
            handshake: p.handshake.as_ref(),
            order_by: p.order_by.as_ref().map(|j| j.as_str()),
            security: Security::of(p),
        }
    }
}

/// Profiles whose fallback id is the digest of the string their signature covers (form
/// schemes: every encoding of one signed form is one event), not of the raw body.
fn ids_signed_string(p: &Profile) -> bool {
    use crate::verify::profile::{Canonical, IdSource};
    matches!(p.id, IdSource::BodySha256)
        && (matches!(p.canonical, Some(Canonical::Mandrill)) || p.payload.uses_form())
}
