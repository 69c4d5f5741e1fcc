//! Provider profiles: YAML describing a provider's signing scheme, validated into [`Profile`].
//! The built-in profiles are the files of `providers/`, compiled into the binary.

use super::algheader::AlgorithmHeader;
use super::anyof::HeaderSet;
use super::certificate::{CertificateRule, RawCertificate};
use super::header::{Format, HeaderFormat};
use super::jwt::{JwtRule, RawJwt};
use super::mac::{Algorithm, Encoding, SecretEncoding};
use super::template::{Segment, Template};
pub use super::timestamp::TimeUnit;
use crate::jsonptr::Pointer;
use http::{HeaderName, Method};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Timestamps outside ±this many seconds are refused unless a profile says otherwise.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

include!(concat!(env!("OUT_DIR"), "/builtin_profiles.rs"));

// ---------------------------------------------------------------------------------------------
// Raw YAML

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    /// Human name of the provider.
    title: Option<String>,
    /// Where the scheme is documented.
    docs: Option<String>,
    /// Assumptions this profile makes where the documentation is vague.
    #[serde(default)]
    assumptions: Vec<String>,
    #[serde(default = "default_methods")]
    methods: Vec<String>,
    /// Required, unless `certificate` says how the request is signed.
    signature: Option<RawSignature>,
    /// A certificate-URL scheme (PayPal, Amazon SNS), instead of `signature`.
    certificate: Option<RawCertificate>,
    #[serde(default)]
    secret: SecretEncoding,
    timestamp: Option<RawTimestamp>,
    #[serde(default)]
    id: RawId,
    /// A value the signature covers that must never be seen twice (Mailgun's token).
    replay: Option<RawSource>,
    /// A verification request the gateway answers itself (see [`super::handshake`]).
    handshake: Option<RawHandshake>,
    /// For queued delivery: a JSON pointer whose value orders deliveries (an object's id).
    order_by: Option<String>,
    /// What the provider's bodies are: `json` refuses any other body before verifying.
    #[serde(default)]
    body: BodyFormat,
}

/// What a provider's bodies are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BodyFormat {
    /// Any bytes.
    #[default]
    Any,
    /// A JSON object or array only. For schemes that sign the body next to a part the sender
    /// can stretch (a query string before it): bytes moved across the seam leave the signed
    /// string unchanged, and a bare scalar may stay valid JSON when shifted (`12345` →
    /// `2345`), while a shifted container is no longer one; so anything else is refused.
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    json: Option<String>,
    /// A form field of the body (Mailgun Routes' `token`).
    form: Option<String>,
}

fn default_methods() -> Vec<String> {
    vec!["POST".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    /// Header names to look in, in order (case-insensitive).
    #[serde(default)]
    headers: Vec<String>,
    /// The signature is inside the JSON body at this pointer, instead of in a header.
    json: Option<String>,
    /// Several headers, each carrying signatures, any of which may match: names, or one
    /// numbered family `Name-*` (`Name-1` … `Name-8`).
    #[serde(default)]
    any_of: Vec<String>,
    /// The signature is this form field of the body (Mailgun Routes).
    form: Option<String>,
    /// Multipart file parts (attachments) are accepted, unsigned, in a form-signed scheme
    /// (Mailgun Routes); otherwise a form with a file part is refused.
    #[serde(default)]
    form_files: bool,
    /// The header naming the algorithm, and the names accepted in it (Sumsub).
    algorithm_header: Option<RawAlgorithmHeader>,
    /// A named canonicaliser, for schemes that are not a template over the request.
    canonical: Option<Canonical>,
    #[serde(default = "default_format")]
    format: Format,
    prefix: Option<String>,
    /// The prefix may be absent (raw format only).
    #[serde(default)]
    prefix_optional: bool,
    /// Key-value format: the value may hold several sets of entries, split by this (Persona's
    /// `t=…,v1=… t=…,v1=…` while a secret rotates); every set's signatures are tried.
    set_separator: Option<String>,
    separator: Option<String>,
    kv_separator: Option<String>,
    /// Keys (key-value) or versions (versioned) whose values are signatures.
    keys: Option<Vec<String>>,
    /// Key of a timestamp embedded in the header (key-value format).
    timestamp_key: Option<String>,
    /// Place of a timestamp among the header's entries, from 0 (positional format).
    timestamp_position: Option<usize>,
    algorithm: Algorithm,
    /// How the signature is written: required by signing schemes; not given for a JWT
    /// (base64url by definition) nor for shared-value schemes (`token`, `basic`).
    encoding: Option<Encoding>,
    /// For `algorithm: jwt-hs256`: the claims to check.
    jwt: Option<RawJwt>,
    /// Default `{body}`; absent for shared-value schemes, which sign nothing.
    payload: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlgorithmHeader {
    name: String,
    /// Accepted names and the algorithm each stands for.
    values: BTreeMap<String, Algorithm>,
}

fn default_format() -> Format {
    Format::Raw
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimestamp {
    header: Option<String>,
    json: Option<String>,
    form: Option<String>,
    #[serde(default)]
    unit: TimeUnit,
    #[serde(default, with = "humantime_serde")]
    tolerance: Option<Duration>,
    /// Whether to hold the timestamp to the tolerance. Defaults to true exactly when the
    /// signature covers it; an unsigned timestamp can never be checked.
    check: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawId {
    /// The header, or its aliases in the order they are looked for.
    header: Option<OneOrMany>,
    json: Option<OneOrMany>,
    /// A body that is a batch: the pointer of the array whose elements are separate events,
    /// each signed on its own; `json` is then read inside each element.
    batch: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A scheme whose signed payload cannot be described by a template alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Canonical {
    /// Twilio: the URL, then the form parameters sorted by name, each name then its value;
    /// JSON bodies are bound by a `bodySHA256` query parameter instead.
    Twilio,
    /// Adyen: HMAC over named fields of each notification item, `:`-joined unescaped; the
    /// signature is in each item's `additionalData.hmacSignature`.
    Adyen,
    /// Mandrill: the URL, then every form field sorted by name, each name then its value.
    Mandrill,
}

pub use super::handshake::Handshake;
use super::handshake::{HandshakeMethod, RawHandshake};

// ---------------------------------------------------------------------------------------------
// Validated

/// A validated provider profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub title: String,
    pub docs: Option<String>,
    pub assumptions: Vec<String>,
    pub methods: Vec<Method>,
    /// Signature header aliases, in the order they are looked for (empty when the
    /// signature is in the body).
    pub headers: Vec<HeaderName>,
    /// The signature's place inside the JSON body, for schemes that put it there.
    pub signature_json: Option<Pointer>,
    /// The signature's form field, for schemes that put it there.
    pub signature_form: Option<String>,
    /// Whether `headers` are aliases (the first present is read) or each may carry a match.
    pub header_set: HeaderSet,
    /// For schemes whose sender names the algorithm in a header: the names allowed.
    pub algorithm_header: Option<AlgorithmHeader>,
    /// A signed one-time value in a form field, remembered to refuse replays.
    pub replay_form: Option<String>,
    /// Whether a form-signed scheme accepts multipart file parts (unsigned attachments).
    pub form_files: bool,
    pub canonical: Option<Canonical>,
    /// A signed one-time value (a nonce) remembered to refuse replays.
    pub replay: Option<Pointer>,
    pub handshake: Option<Handshake>,
    /// For queued delivery: deliveries with the same value here go one at a time, in order.
    pub order_by: Option<Pointer>,
    pub header_format: HeaderFormat,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub payload: Template,
    /// For JWT signatures: the claims that bind the body, the issuer and the times.
    pub jwt: Option<JwtRule>,
    pub secret: SecretEncoding,
    pub timestamp: Option<TimestampRule>,
    pub id: IdSource,
    /// What the bodies are; `Json` bodies are parsed before they are verified.
    pub body: BodyFormat,
    /// For batched bodies whose items are signed one by one: the array of items. Each item
    /// is its own event (its id read with `id` inside the item) and is deduplicated alone.
    pub batch: Option<Pointer>,
    /// For certificate-URL schemes: the scheme and its pinned hosts. The signature fields
    /// above (`algorithm`, `encoding`, `payload`) are then unused.
    pub certificate: Option<CertificateRule>,
}

/// Where a timestamp is read and whether it is held to a tolerance.
#[derive(Debug, Clone)]
pub struct TimestampRule {
    pub source: TimestampSource,
    pub unit: TimeUnit,
    pub tolerance: Duration,
    /// True only when the signature covers the timestamp.
    pub check: bool,
}

#[derive(Debug, Clone)]
pub enum TimestampSource {
    Header(HeaderName),
    /// A key of the signature header (`t` in Stripe's `t=…,v1=…`).
    Signature,
    Json(Pointer),
    /// A form field of the body.
    Form(String),
}

/// Where the event's idempotency key comes from.
#[derive(Debug, Clone)]
pub enum IdSource {
    /// A header, or its aliases in the order they are looked for (the first present wins).
    Header(Vec<HeaderName>),
    /// One or more pointers into the JSON body, joined with `:`.
    Json(Vec<Pointer>),
    /// The SHA-256 of the raw body, for providers that send no event id.
    BodySha256,
}

impl IdSource {
    pub fn describe(&self) -> String {
        match self {
            IdSource::Header(h) => {
                format!("header {}", h.iter().map(HeaderName::as_str).collect::<Vec<_>>().join(" | "))
            }
            IdSource::Json(p) => {
                let ps: Vec<_> = p.iter().map(Pointer::as_str).collect();
                format!("body {}", ps.join(" + "))
            }
            IdSource::BodySha256 => "sha256(body)".into(),
        }
    }

    /// As [`describe`](Self::describe), for a profile whose bodies may be batches.
    pub fn describe_in(&self, batch: Option<&Pointer>) -> String {
        match batch {
            Some(b) => format!("each item of {b}: {}", self.describe()),
            None => self.describe(),
        }
    }
}

impl TimestampRule {
    pub fn describe(&self) -> String {
        let src = match &self.source {
            TimestampSource::Header(h) => format!("header {h}"),
            TimestampSource::Signature => "in signature header".into(),
            TimestampSource::Json(p) => format!("body {p}"),
            TimestampSource::Form(f) => format!("form field {f}"),
        };
        if self.check {
            format!("{src}, ±{}s", self.tolerance.as_secs())
        } else {
            format!("{src}, unchecked (unsigned)")
        }
    }
}

/// A profile that failed to load: the file and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ProfileError {
    pub origin: String,
    pub message: String,
}

impl Profile {
    /// Parses and validates one profile; `origin` names the file in errors.
    pub fn from_yaml(origin: &str, text: &str) -> Result<Self, ProfileError> {
        let err = |message: String| ProfileError { origin: origin.to_string(), message };
        let raw: RawProfile = serde_yaml_ng::from_str(text).map_err(|e| err(yaml_message(&e)))?;
        raw.validate().map_err(err)
    }

    /// Where the signature is read, for tables and diagnosis.
    pub fn signature_place(&self) -> String {
        if let Some(c) = &self.certificate {
            return c.signature_place();
        }
        match (&self.signature_json, self.canonical) {
            (_, Some(Canonical::Adyen)) => "body notificationItems[*] hmacSignature".into(),
            (Some(p), _) => format!("body {p}"),
            _ if self.signature_form.is_some() => {
                format!("form field {}", self.signature_form.as_deref().unwrap_or_default())
            }
            _ => self.header_set.describe(&self.headers),
        }
    }
}

/// Formats a YAML error with its line and column.
pub fn yaml_message(e: &serde_yaml_ng::Error) -> String {
    match e.location() {
        Some(l) => format!("line {} column {}: {e}", l.line(), l.column()),
        None => e.to_string(),
    }
}

/// Parses a `methods:` list of upper-case HTTP methods.
pub fn parse_methods(list: &[String]) -> Result<Vec<Method>, String> {
    list.iter()
        .map(|m| {
            Method::from_bytes(m.as_bytes())
                .ok()
                .filter(|_| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()))
                .ok_or_else(|| format!("methods: '{m}' is not an upper-case HTTP method"))
        })
        .collect()
}

fn header_name(s: &str, what: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("{what}: '{s}' is not a header name"))
}

impl RawProfile {
    fn validate(self) -> Result<Profile, String> {
        if self.name.is_empty()
            || !self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!("name '{}' must be lower-case letters, digits and '-'", self.name));
        }
        let methods = parse_methods(&self.methods)?;
        if methods.is_empty() {
            return Err("methods: at least one method is needed".into());
        }

        if let Some(cert) = self.certificate {
            return certificate_profile(
                self.name,
                self.title,
                self.docs,
                self.assumptions,
                methods,
                cert,
                Rest {
                    signature: self.signature.is_some(),
                    timestamp: self.timestamp.is_some(),
                    id: self.id.header.is_some() || self.id.json.is_some() || self.id.batch.is_some(),
                    replay: self.replay.is_some(),
                    handshake: self.handshake.is_some(),
                    body: self.body != BodyFormat::Any,
                    order_by: self.order_by,
                },
            );
        }
        let sig =
            self.signature.ok_or("signature: is needed (or certificate:, for a certificate-URL scheme)")?;
        let signature_json = sig
            .json
            .as_deref()
            .map(|p| Pointer::parse(p).map_err(|e| format!("signature.json: {e}")))
            .transpose()?;
        let signature_form = sig.form.clone();
        if signature_form.as_deref() == Some("") {
            return Err("signature.form: name the form field".into());
        }
        let sources = [
            !sig.headers.is_empty(),
            !sig.any_of.is_empty(),
            signature_json.is_some(),
            signature_form.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        match (sources, sig.canonical) {
            (_, Some(Canonical::Adyen)) => {}
            (0, _) => {
                return Err(
                    "signature: give the headers it is sent in (headers or any_of), its json pointer \
                     in the body, or its form field"
                        .into(),
                )
            }
            (1, _) => {}
            _ => return Err("signature: give only one of headers, any_of, json and form".into()),
        }
        let (header_set, headers) = if sig.any_of.is_empty() {
            let h = sig
                .headers
                .iter()
                .map(|h| header_name(h, "signature.headers"))
                .collect::<Result<Vec<_>, _>>()?;
            (HeaderSet::First, h)
        } else {
            if sig.timestamp_key.is_some() || sig.timestamp_position.is_some() {
                return Err(
                    "signature.any_of: a timestamp inside one of several signature headers is not supported"
                        .into(),
                );
            }
            HeaderSet::from_list(&sig.any_of)?
        };
        if sig.canonical == Some(Canonical::Mandrill) && headers.is_empty() {
            return Err("signature.canonical: mandrill reads its signature from headers".into());
        }
        let algorithm_header = match sig.algorithm_header {
            None => None,
            Some(a) => {
                let a = AlgorithmHeader::new(&a.name, a.values)?;
                if a.name_of(sig.algorithm).is_none() {
                    return Err(format!(
                        "signature.algorithm_header.values: list signature.algorithm ({}) too; it is the one `sign` uses",
                        sig.algorithm.name()
                    ));
                }
                Some(a)
            }
        };
        // Shared-value schemes (token, basic) compare a header with the secret: nothing is
        // signed, so nothing describing a signature may be given.
        let shared = sig.algorithm.is_shared_secret();
        if shared {
            let given = [
                ("signature.encoding", sig.encoding.is_some()),
                ("signature.payload", sig.payload.is_some()),
                ("signature.json", signature_json.is_some()),
                ("signature.form", signature_form.is_some()),
                ("signature.any_of", !sig.any_of.is_empty()),
                ("signature.algorithm_header", algorithm_header.is_some()),
                ("signature.canonical", sig.canonical.is_some()),
                ("signature.format", sig.format != Format::Raw),
                ("signature.prefix", sig.prefix.is_some()),
                ("timestamp", self.timestamp.is_some()),
                ("replay", self.replay.is_some()),
                ("secret", self.secret != SecretEncoding::Raw),
            ];
            if let Some((what, _)) = given.iter().find(|(_, g)| *g) {
                return Err(format!(
                    "{what}: algorithm {} signs nothing (the header is compared with the route's secret); remove it",
                    sig.algorithm.name()
                ));
            }
        }
        let payload_text =
            sig.payload.clone().unwrap_or_else(|| if shared { String::new() } else { "{body}".into() });
        let payload = Template::parse(&payload_text).map_err(|e| format!("signature.payload: {e}"))?;
        // The whole body must be signed, unless the signature lives inside it (it cannot sign
        // itself) or a canonicaliser decides what is signed.
        if !payload.uses(&Segment::Body)
            && signature_json.is_none()
            && signature_form.is_none()
            && sig.canonical.is_none()
            && !shared
        {
            return Err("signature.payload must contain {body}".into());
        }
        if sig.form_files && signature_form.is_none() && !payload.uses_form() {
            return Err("signature.form_files belongs to schemes that sign named form fields".into());
        }
        if !sig.algorithm.accepts(self.secret) {
            return Err(format!(
                "secret: {} keys do not go with the {} algorithm",
                self.secret.name(),
                sig.algorithm.name()
            ));
        }
        let (jwt, encoding) = match (sig.algorithm == Algorithm::JwtHs256, sig.jwt, sig.encoding) {
            (true, Some(j), None) => {
                // The token binds the body by its hash; nothing else may be signed or read.
                if sig.payload.is_some() || sig.format != Format::Raw || self.timestamp.is_some() {
                    return Err("signature.jwt: a JWT signs its claims; payload, format and timestamp are \
                         not used (its times are the iat/exp claims)"
                        .into());
                }
                (Some(j.validate()?), Encoding::Base64url)
            }
            (true, None, _) => {
                return Err(
                    "signature.jwt: the jwt-hs256 algorithm needs a jwt block with its body_hash".into()
                )
            }
            (true, Some(_), Some(_)) => {
                return Err("signature.encoding: a JWT is base64url by definition; leave it out".into())
            }
            (false, Some(_), _) => return Err("signature.jwt belongs to the jwt-hs256 algorithm".into()),
            (false, None, None) if shared => (None, Encoding::Plain),
            (false, None, None) => {
                return Err("signature.encoding is needed (hex, base64 or base64url)".into())
            }
            (false, None, Some(Encoding::Plain)) if !shared => {
                return Err("signature.encoding: plain is only for the token and basic algorithms".into())
            }
            (false, None, Some(e)) => (None, e),
        };

        let (sep, kv) = match sig.format {
            Format::Raw => ("", ""),
            Format::KeyValue => (",", "="),
            Format::Versioned => (" ", ","),
            Format::Positional => (",", ""),
        };
        let keys = sig.keys.unwrap_or_default();
        if sig.timestamp_position.is_some() && sig.format != Format::Positional {
            return Err("signature.timestamp_position belongs to the positional format".into());
        }
        match sig.format {
            Format::Positional => {
                if !keys.is_empty()
                    || sig.timestamp_key.is_some()
                    || sig.prefix.is_some()
                    || sig.kv_separator.is_some()
                {
                    return Err(
                        "signature: the positional format takes separator and timestamp_position, not keys, \
                         timestamp_key, prefix or kv_separator"
                            .into(),
                    );
                }
                if sig.timestamp_position.is_some_and(|p| p >= super::header::MAX_SIGNATURES) {
                    return Err("signature.timestamp_position: too far into the list".into());
                }
            }
            Format::Raw => {
                if !keys.is_empty() || sig.timestamp_key.is_some() || sig.separator.is_some() {
                    return Err(
                        "signature: keys, timestamp_key and separator belong to the key-value and versioned formats"
                            .into(),
                    );
                }
            }
            Format::KeyValue | Format::Versioned => {
                if keys.is_empty() || keys.iter().any(String::is_empty) {
                    return Err(format!(
                        "signature.keys: the {} format needs the keys whose values are signatures",
                        if sig.format == Format::KeyValue { "key-value" } else { "versioned" }
                    ));
                }
                if sig.prefix.is_some() {
                    return Err("signature.prefix belongs to the raw format".into());
                }
                if sig.format == Format::Versioned && sig.timestamp_key.is_some() {
                    return Err("signature.timestamp_key belongs to the key-value format".into());
                }
            }
        }
        if sig.set_separator.is_some() && sig.format != Format::KeyValue {
            return Err("signature.set_separator belongs to the key-value format".into());
        }
        if sig.prefix_optional
            && (sig.format != Format::Raw || sig.prefix.as_deref().is_none_or(str::is_empty))
        {
            return Err("signature.prefix_optional: only for a raw format with a prefix".into());
        }
        let header_format = HeaderFormat {
            format: sig.format,
            prefix: sig.prefix.filter(|p| !p.is_empty()),
            prefix_optional: sig.prefix_optional,
            set_separator: sig.set_separator.filter(|s| !s.is_empty()),
            separator: sig.separator.unwrap_or_else(|| sep.into()),
            kv_separator: sig.kv_separator.unwrap_or_else(|| kv.into()),
            signature_keys: keys,
            timestamp_key: sig.timestamp_key,
            timestamp_position: sig.timestamp_position,
        };
        if header_format.format != Format::Raw
            && (header_format.separator.is_empty()
                || (header_format.format != Format::Positional && header_format.kv_separator.is_empty()))
        {
            return Err("signature: separator and kv_separator cannot be empty".into());
        }

        let id = match (self.id.header, self.id.json) {
            (Some(_), Some(_)) => return Err("id: give either header or json, not both".into()),
            (Some(h), None) => {
                let names = match h {
                    OneOrMany::One(s) => vec![s],
                    OneOrMany::Many(v) => v,
                };
                if names.is_empty() {
                    return Err("id.header: at least one header name is needed".into());
                }
                IdSource::Header(
                    names.iter().map(|n| header_name(n, "id.header")).collect::<Result<Vec<_>, _>>()?,
                )
            }
            (None, Some(j)) => {
                let list = match j {
                    OneOrMany::One(s) => vec![s],
                    OneOrMany::Many(v) => v,
                };
                if list.is_empty() {
                    return Err("id.json: at least one pointer is needed".into());
                }
                IdSource::Json(
                    list.iter()
                        .map(|p| Pointer::parse(p).map_err(|e| format!("id.json: {e}")))
                        .collect::<Result<_, _>>()?,
                )
            }
            (None, None) => IdSource::BodySha256,
        };
        let batch = match self.id.batch {
            None => None,
            Some(_) if !matches!(id, IdSource::Json(_)) => {
                return Err("id.batch: the items' ids must be read with id.json".into())
            }
            // A batch split into its items is only verifiable by the upstream when each item
            // carries its own signature.
            Some(_) if sig.canonical != Some(Canonical::Adyen) => {
                return Err(
                    "id.batch: only for schemes that sign each item on its own (canonical: adyen)".into()
                )
            }
            Some(b) => {
                let ptr = Pointer::parse(&b).map_err(|e| format!("id.batch: {e}"))?;
                if ptr.is_wildcard() {
                    return Err("id.batch: the pointer names one array, without '*'".into());
                }
                Some(ptr)
            }
        };
        let self_body = self.body;
        let handshake = self
            .handshake
            .map(|h| h.validate(sig.algorithm))
            .transpose()
            .map_err(|e| format!("handshake: {e}"))?;
        // A GET handshake answers anyone; if it returns the HMAC of their challenge under the
        // signing key, that HMAC must never be a delivery's signature. An answered challenge is
        // a token (no '{' or '['); with body: json, every signed string holds the raw body and
        // so a '{' or '['.
        let oracle =
            handshake.as_ref().is_some_and(|h| h.method == HandshakeMethod::Get && h.macs_challenge());
        if oracle
            && (self_body != BodyFormat::Json || !payload.uses(&Segment::Body) || sig.canonical.is_some())
        {
            return Err("handshake: an unsigned GET handshake returns the HMAC of any caller's challenge \
                        under the signing key, which must never be a delivery's signature; sign {body} \
                        as is (no canonical form) and declare body: json"
                .into());
        }
        let url_into_body =
            payload.segments().windows(2).any(|w| w[0] == Segment::Url && w[1] == Segment::Body);
        if url_into_body && sig.canonical.is_none() && self_body != BodyFormat::Json {
            return Err(
                "signature.payload runs {url} into {body}: bytes can move between the query and the \
                 body without changing what is signed; declare body: json"
                    .into(),
            );
        }
        if payload.uses(&Segment::Id) && !matches!(id, IdSource::Header(_)) {
            return Err("signature.payload uses {id}, which needs id.header".into());
        }

        let mut replay_form = None;
        let replay = match self.replay {
            None => None,
            Some(RawSource { json: None, form: Some(f) }) if !f.is_empty() => {
                let signed = payload.uses(&Segment::Body) || payload.uses(&Segment::Form(f.clone()));
                if !signed {
                    return Err("replay.form: the value must be covered by the signature".into());
                }
                replay_form = Some(f);
                None
            }
            Some(RawSource { json: Some(j), form: None }) => {
                let ptr = Pointer::parse(&j).map_err(|e| format!("replay.json: {e}"))?;
                let signed = payload.uses(&Segment::Body)
                    || payload.segments().iter().any(|s| *s == Segment::Json(ptr.clone()));
                if !signed {
                    return Err("replay.json: the value must be covered by the signature".into());
                }
                Some(ptr)
            }
            Some(_) => {
                return Err(
                    "replay: give the json pointer or the form field of a signed one-time value".into()
                )
            }
        };

        let in_template = payload.uses(&Segment::Timestamp);
        let in_signature =
            header_format.timestamp_key.is_some() || header_format.timestamp_position.is_some();
        let timestamp = match (self.timestamp, in_signature) {
            (None, false) => None,
            (raw, key) => {
                let raw = raw.unwrap_or(RawTimestamp {
                    header: None,
                    json: None,
                    form: None,
                    unit: TimeUnit::Seconds,
                    tolerance: None,
                    check: None,
                });
                let source = match (raw.header, raw.json, raw.form, key) {
                    (Some(h), None, None, false) => {
                        TimestampSource::Header(header_name(&h, "timestamp.header")?)
                    }
                    (None, Some(j), None, false) => {
                        TimestampSource::Json(Pointer::parse(&j).map_err(|e| format!("timestamp.json: {e}"))?)
                    }
                    (None, None, Some(f), false) if !f.is_empty() => TimestampSource::Form(f),
                    (None, None, None, true) => TimestampSource::Signature,
                    _ => return Err(
                        "timestamp: give exactly one of timestamp.header, timestamp.json, timestamp.form, \
                             signature.timestamp_key or signature.timestamp_position"
                            .into(),
                    ),
                };
                let signed = match &source {
                    TimestampSource::Json(p) => {
                        in_template
                            || payload.uses(&Segment::Body)
                            || payload.segments().iter().any(|s| *s == Segment::Json(p.clone()))
                    }
                    TimestampSource::Form(f) => {
                        in_template || payload.uses(&Segment::Body) || payload.uses(&Segment::Form(f.clone()))
                    }
                    _ => in_template,
                };
                let check = match (raw.check, &source) {
                    (Some(true), _) if !signed => {
                        return Err("timestamp.check: an unsigned timestamp cannot guard against replay; \
                             checking it would refuse late genuine retries"
                            .into())
                    }
                    (Some(c), _) => c,
                    // An event time inside the body stays the same across retries: only a
                    // profile that knows the field is per-delivery may opt in.
                    (None, TimestampSource::Json(_) | TimestampSource::Form(_)) => false,
                    (None, _) => signed,
                };
                Some(TimestampRule {
                    source,
                    unit: raw.unit,
                    tolerance: raw.tolerance.unwrap_or(DEFAULT_TOLERANCE),
                    check,
                })
            }
        };
        if in_template && timestamp.is_none() {
            return Err("signature.payload uses {timestamp}, but no timestamp source is given".into());
        }

        Ok(Profile {
            title: self.title.unwrap_or_else(|| self.name.clone()),
            name: self.name,
            docs: self.docs,
            assumptions: self.assumptions,
            methods,
            headers,
            signature_json,
            signature_form,
            header_set,
            algorithm_header,
            replay_form,
            form_files: sig.form_files,
            canonical: sig.canonical,
            replay,
            handshake,
            order_by: self
                .order_by
                .as_deref()
                .map(|p| Pointer::parse(p).map_err(|e| format!("order_by: {e}")))
                .transpose()?,
            header_format,
            algorithm: sig.algorithm,
            encoding,
            payload,
            jwt,
            secret: self.secret,
            timestamp,
            id,
            body: self_body,
            batch,
            certificate: None,
        })
    }
}

/// What else a certificate profile set, which its scheme fixes instead.
struct Rest {
    signature: bool,
    timestamp: bool,
    id: bool,
    replay: bool,
    handshake: bool,
    body: bool,
    order_by: Option<String>,
}

/// A profile whose requests are signed by a certificate fetched from a URL: the scheme fixes
/// the signature, the timestamp, the id and the body format.
fn certificate_profile(
    name: String,
    title: Option<String>,
    docs: Option<String>,
    assumptions: Vec<String>,
    methods: Vec<Method>,
    cert: RawCertificate,
    rest: Rest,
) -> Result<Profile, String> {
    if rest.signature || rest.timestamp || rest.id || rest.replay || rest.handshake || rest.body {
        return Err("certificate: the scheme fixes the signature, timestamp, id and body; give none of \
             signature, timestamp, id, replay, handshake or body"
            .into());
    }
    let parts = cert.validate()?;
    Ok(Profile {
        title: title.unwrap_or_else(|| name.clone()),
        name,
        docs,
        assumptions,
        methods,
        headers: Vec::new(),
        signature_json: None,
        canonical: None,
        replay: None,
        handshake: None,
        order_by: rest
            .order_by
            .as_deref()
            .map(|p| Pointer::parse(p).map_err(|e| format!("order_by: {e}")))
            .transpose()?,
        header_format: HeaderFormat::default(),
        signature_form: None,
        header_set: HeaderSet::default(),
        algorithm_header: None,
        replay_form: None,
        form_files: false,
        jwt: None,
        algorithm: Algorithm::HmacSha256,
        encoding: Encoding::Base64,
        payload: Template::parse("{body}").expect("valid"),
        secret: SecretEncoding::Raw,
        timestamp: parts.timestamp,
        id: parts.id,
        body: if parts.json_body { BodyFormat::Json } else { BodyFormat::Any },
        batch: None,
        certificate: Some(parts.rule),
    })
}

/// The profiles a gateway knows: the built-ins, then those of `providers_dir`.
#[derive(Debug, Clone, Default)]
pub struct ProfileSet {
    map: BTreeMap<String, Arc<Profile>>,
}

impl ProfileSet {
    /// The profiles compiled into the binary.
    pub fn builtin() -> Self {
        let mut set = ProfileSet::default();
        for (file, text) in BUILTIN_PROFILES {
            let p = Profile::from_yaml(&format!("providers/{file}"), text)
                .unwrap_or_else(|e| panic!("built-in profile is invalid: {e}"));
            set.map.insert(p.name.clone(), Arc::new(p));
        }
        set
    }

    /// Adds or overrides profiles with every `*.yaml`/`*.yml` file of `dir`.
    pub fn extend_from_dir(&mut self, dir: &Path) -> Result<(), ProfileError> {
        let entries = std::fs::read_dir(dir).map_err(|e| ProfileError {
            origin: dir.display().to_string(),
            message: format!("cannot read providers_dir: {e}"),
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        paths.sort();
        for path in paths {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ProfileError { origin: origin.clone(), message: e.to_string() })?;
            let p = Profile::from_yaml(&origin, &text)?;
            self.map.insert(p.name.clone(), Arc::new(p));
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Profile>> {
        self.map.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.map.values()
    }

    pub fn names(&self) -> Vec<&str> {
        self.map.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_loads() {
        let set = ProfileSet::builtin();
        for name in [
            "paylent",
            "paymento",
            "payable",
            "paysafe",
            "paynetworx",
            "stripe",
            "github",
            "shopify",
            "slack",
            "standard-webhooks",
            "svix",
        ] {
            assert!(set.get(name).is_some(), "missing built-in {name}");
        }
    }

    #[test]
    fn a_get_handshake_returning_the_challenges_hmac_needs_json_bodies() {
        let crc = "handshake:\n  method: GET\n  challenge: {query: crc_token}\n  reply: {json: {t: 'sha256={challenge_hmac_base64}'}}\n";
        let profile = |sig: &str, rest: &str| {
            Profile::from_yaml(
                "x.yaml",
                &format!("name: x\nsignature:\n  headers: [A]\n  algorithm: hmac-sha256\n  encoding: base64\n{sig}{crc}{rest}"),
            )
        };
        // Without body: json, any body could be a crc_token whose HMAC the handshake returns.
        let e = profile("", "").unwrap_err().to_string();
        assert!(e.contains("handshake:") && e.contains("body: json"), "{e}");
        let p = profile("", "body: json\n").unwrap();
        assert!(p.handshake.as_ref().unwrap().macs_challenge());
        let p =
            profile("  payload: 'v0:{timestamp}:{body}'\n", "body: json\ntimestamp: {header: T}\n").unwrap();
        assert_eq!(p.body, BodyFormat::Json);
        // An echo uses no secret, and a POST handshake is authenticated: neither needs it.
        let echo = "handshake:\n  method: GET\n  challenge: {query: c}\n  reply: {text: '{challenge}'}\n";
        Profile::from_yaml(
            "x.yaml",
            &format!(
                "name: x\nsignature:\n  headers: [A]\n  algorithm: hmac-sha256\n  encoding: hex\n{echo}"
            ),
        )
        .unwrap();
        Profile::from_yaml(
            "x.yaml",
            "name: x\nsignature:\n  headers: [A]\n  algorithm: hmac-sha256\n  encoding: hex\nhandshake: zoom-url-validation\n",
        )
        .unwrap();
        let twitter = ProfileSet::builtin().get("twitter").unwrap().clone();
        assert_eq!(twitter.body, BodyFormat::Json);
        assert!(ProfileSet::builtin().get("nylas").unwrap().handshake.is_some());
    }

    #[test]
    fn unknown_keys_are_refused_with_a_line() {
        let e = Profile::from_yaml(
            "x.yaml",
            "name: x\nsignature:\n  headers: [A]\n  algorithm: hmac-sha256\n  encoding: hex\n  colour: red\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("x.yaml: line"), "{e}");
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn unsigned_timestamp_cannot_be_checked() {
        let e = Profile::from_yaml(
            "x.yaml",
            "name: x\nsignature: {headers: [A], algorithm: hmac-sha256, encoding: hex}\ntimestamp: {header: T, check: true}\n",
        )
        .unwrap_err();
        assert!(e.message.contains("unsigned"), "{e}");
        let p = Profile::from_yaml(
            "x.yaml",
            "name: x\nsignature: {headers: [A], algorithm: hmac-sha256, encoding: hex}\ntimestamp: {header: T}\n",
        )
        .unwrap();
        assert!(!p.timestamp.unwrap().check);
    }

    #[test]
    fn signed_timestamp_is_checked_by_default() {
        let p = Profile::from_yaml(
            "x.yaml",
            "name: x\nsignature: {headers: [A], algorithm: hmac-sha256, encoding: hex, payload: '{timestamp}.{body}'}\ntimestamp: {header: T}\n",
        )
        .unwrap();
        let t = p.timestamp.unwrap();
        assert!(t.check);
        assert_eq!(t.tolerance, DEFAULT_TOLERANCE);
        let e = Profile::from_yaml(
            "x.yaml",
            "name: x\nsignature: {headers: [A], algorithm: hmac-sha256, encoding: hex, payload: '{timestamp}.{body}'}\n",
        )
        .unwrap_err();
        assert!(e.message.contains("no timestamp source"), "{e}");
    }

    #[test]
    fn a_batch_needs_per_item_signatures_and_json_ids() {
        let adyen = |id: &str| {
            Profile::from_yaml(
                "x.yaml",
                &format!("name: x\nsignature: {{canonical: adyen, algorithm: hmac-sha256, encoding: base64}}\nsecret: hex\nid: {id}\n"),
            )
        };
        let p = adyen("{batch: /items, json: [/a, /b]}").unwrap();
        assert_eq!(p.batch.as_ref().map(Pointer::as_str), Some("/items"));
        assert!(adyen("{batch: /items/*, json: /a}").unwrap_err().message.contains("without '*'"));
        assert!(adyen("{batch: /items, header: X-Id}").unwrap_err().message.contains("id.json"));
        let e = Profile::from_yaml(
            "x.yaml",
            "name: x\nsignature: {headers: [A], algorithm: hmac-sha256, encoding: hex}\nid: {batch: /items, json: /id}\n",
        )
        .unwrap_err();
        assert!(e.message.contains("sign each item on its own"), "{e}");
        let hubspot = ProfileSet::builtin().get("hubspot").unwrap().clone();
        assert_eq!(hubspot.body, BodyFormat::Json);
    }

    #[test]
    fn a_url_run_into_the_body_needs_json_bodies() {
        let yaml = |extra: &str| {
            format!("name: x\nsignature: {{headers: [A], algorithm: hmac-sha256, encoding: hex, payload: '{{url}}{{body}}'}}\n{extra}")
        };
        let e = Profile::from_yaml("x.yaml", &yaml("")).unwrap_err();
        assert!(e.message.contains("declare body: json"), "{e}");
        assert!(Profile::from_yaml("x.yaml", &yaml("body: json\n")).is_ok());
    }

    #[test]
    fn a_certificate_profile_takes_no_signature_keys() {
        let cert = "certificate: {scheme: paypal, hosts: [api.paypal.com], path_pattern: '/c/{token}', subjects: [paypal.com]}\n";
        let p = Profile::from_yaml("x.yaml", &format!("name: x\n{cert}")).unwrap();
        assert!(p.headers.is_empty() && p.certificate.is_some());
        assert!(p.timestamp.as_ref().unwrap().check, "PayPal's transmission time is signed");
        for extra in [
            "signature: {headers: [A], algorithm: hmac-sha256, encoding: hex}\n",
            "timestamp: {header: T}\n",
            "id: {header: X-Id}\n",
            "body: json\n",
        ] {
            let e = Profile::from_yaml("x.yaml", &format!("name: x\n{cert}{extra}")).unwrap_err();
            assert!(e.message.contains("the scheme fixes"), "{extra}: {e}");
        }
        let e = Profile::from_yaml("x.yaml", "name: x\n").unwrap_err();
        assert!(e.message.contains("signature: is needed"), "{e}");
    }
}
