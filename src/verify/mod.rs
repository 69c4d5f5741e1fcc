//! Signature verification: a [`Verifier`] is a profile with its route's decoded secrets, and
//! checks one request's raw body and headers in constant time.
//!
//! - [`header`]: parsing the signature header's value;
//! - [`template`]: the signed payload, fed to the MAC in parts;
//! - [`mac`]: algorithms, encodings and secrets;
//! - [`asymmetric`]: ECDSA P-256 and RSA public keys;
//! - [`jwt`]: signatures sent as a JWT whose claims bind the body by its hash;
//! - [`profile`]: provider profiles (YAML, built-ins from `providers/`), the data a
//!   [`Verifier`] is built from;
//! - [`canonical`]: schemes that sign a canonical form of the body;
//! - [`timestamp`]: timestamp units and the tolerance check;
//! - [`form`]: form bodies (url-encoded, multipart) whose fields are signed or sign;
//! - [`anyof`]: signatures in several headers, any of which may match;
//! - [`algheader`]: an algorithm named by the sender, among those a profile allows;
//! - [`token`]: schemes that send a shared token or password instead of a signature;
//! - [`handshake`]: endpoint-verification requests, as data;
//! - [`certificate`]: schemes signed by a certificate fetched from a URL (PayPal, SNS);
//! - [`diagnose`]: why a signature did not match, for logs and `verify --explain`;
//! - [`security`]: what a profile's scheme protects against, derived from the profile.
//!
//! The dependencies point one way: `profile` is built from `header`, `mac` and `template`;
//! this module and `diagnose` read `profile`; nothing here reads a module outside `verify/`
//! but [`crate::jsonptr`].

pub mod algheader;
pub mod anyof;
pub mod asymmetric;
pub mod canonical;
pub mod certificate;
pub mod diagnose;
pub mod form;
pub mod handshake;
pub mod header;
pub mod jwt;
pub mod mac;
pub mod profile;
pub mod security;
pub mod template;
pub mod timestamp;
pub mod token;

use crate::jsonptr::{LookupError, Pointer};
use header::HeaderError;
use http::{HeaderMap, HeaderName, Method};
use mac::{Key, MAX_DIGEST, MAX_SIGNATURE};
use profile::{BodyFormat, Canonical, IdSource, Profile, TimestampSource};
use sha2::{Digest as _, Sha256};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use template::Segment;

/// Why a request's signature was refused. The messages are for logs: they never hold a
/// secret or a signature value, and callers only ever see a generic 401.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("no signature (looked for {0})")]
    MissingSignature(String),
    #[error("the header {0} appears more than once")]
    DuplicateHeader(HeaderName),
    #[error("the signature header is not visible ASCII")]
    NotAscii,
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("no signature value decodes as a {0} signature of the expected length")]
    Undecodable(&'static str),
    #[error("no configured secret produces a matching signature")]
    Mismatch,
    #[error("the signed timestamp is missing")]
    MissingTimestamp,
    #[error("the signed timestamp cannot be read as the profile's unit")]
    BadTimestamp,
    #[error("the signed timestamp is {0}s old, beyond the tolerance of {1}s")]
    Stale(u64, u64),
    #[error("the signed timestamp is {0}s in the future, beyond the tolerance of {1}s")]
    Future(u64, u64),
    #[error("the signed id header is missing")]
    MissingId,
    #[error("the signed body field {0} is missing")]
    MissingField(String),
    #[error("the body does not hash to the bodySHA256 the URL carries")]
    BodyHash,
    #[error("the body names the key '{0}' twice")]
    DuplicateJsonKey(String),
    #[error("the body is not a JSON object or array, which the profile requires")]
    NotJson,
    #[error("the signed string also reads as another request's: {0}")]
    Reinterpreted(&'static str),
    #[error("the signed token is refused: {0}")]
    Claim(&'static str),
    #[error("the algorithm header is missing, repeated, or names an algorithm the profile does not allow")]
    Algorithm,
    #[error(transparent)]
    Form(#[from] form::FormError),
    /// The certificate URL names a host (or port) the profile does not pin.
    #[error("the certificate URL is not on the provider's pinned hosts")]
    CertificateHost,
    /// The certificate URL is on a pinned host but not of the shape the profile allows (a
    /// query, a fragment, user info, a percent-escape, a path off `path_pattern`).
    #[error("the certificate URL is refused: {0}")]
    CertificateUrl(&'static str),
    #[error("certificate scheme: {0}")]
    Certificate(String),
}

impl VerifyError {
    /// True for requests that are ambiguous rather than unauthentic (answered 400, not 401).
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            VerifyError::DuplicateHeader(_)
                | VerifyError::DuplicateJsonKey(_)
                | VerifyError::Form(form::FormError::Duplicate(_))
        )
    }

    /// True when the signature was read but matched nothing: worth a diagnosis.
    pub fn is_mismatch(&self) -> bool {
        matches!(self, VerifyError::Mismatch | VerifyError::Undecodable(_) | VerifyError::MissingSignature(_))
    }
}

/// What one request offers for verification.
pub struct Input<'a> {
    pub method: &'a Method,
    /// The URL the provider signed; only read by schemes that sign the URL.
    pub url: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Unix seconds.
    pub now: u64,
}

/// One event of a batched body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem<'a> {
    pub id: Cow<'a, str>,
    /// Where the item's raw text lies in the body.
    pub span: std::ops::Range<usize>,
}

/// A verified request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Index of the route secret that matched (0 = the first configured).
    pub secret_index: usize,
}

/// One configured secret. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub value: String,
    /// Unix seconds after which the secret no longer verifies (diagnosis still names it).
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("value", &"<redacted>").field("expires_at", &self.expires_at).finish()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret { value, expires_at: None }
    }
}

/// A profile bound to a route's secrets. Its `Debug` names the profile and counts the
/// secrets, never printing one.
#[derive(Clone)]
pub struct Verifier {
    profile: Arc<Profile>,
    keys: Vec<Key>,
    /// Decoded key bytes, for the diagnosis's what-ifs (never logged).
    raw: Vec<Vec<u8>>,
    expires: Vec<Option<u64>>,
    /// Per secret: a short digest naming the signing key (not revealing it), so that what is
    /// remembered per key (replay nonces) is shared by every route that uses the key.
    tags: Vec<[u8; 8]>,
    tolerance: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("profile", &self.profile.name)
            .field("secrets", &self.keys.len())
            .field("expires", &self.expires)
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

/// The values a payload template refers to, for one request.
struct Parts<'a> {
    body: &'a [u8],
    timestamp: &'a [u8],
    id: &'a [u8],
    method: &'a [u8],
    url: &'a [u8],
    json: &'a [Cow<'a, str>],
    form: &'a [String],
}

impl<'a> Parts<'a> {
    /// The template's pieces in order, without joining them.
    fn iter(&'a self, segments: &'a [Segment]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut json = self.json.iter();
        let mut form = self.form.iter();
        segments.iter().map(move |s| match s {
            Segment::Literal(b) => &b[..],
            Segment::Body => self.body,
            Segment::Timestamp => self.timestamp,
            Segment::Id => self.id,
            Segment::Method => self.method,
            Segment::Url => self.url,
            Segment::Json(_) => json.next().map(|v| v.as_bytes()).unwrap_or_default(),
            Segment::Form(_) => form.next().map(|v| v.as_bytes()).unwrap_or_default(),
        })
    }
}

fn json_value<'b>(ptr: &Pointer, body: &'b [u8]) -> Result<Option<Cow<'b, str>>, VerifyError> {
    match ptr.lookup(body) {
        Ok(v) => Ok(v),
        Err(LookupError::DuplicateKey(k)) => Err(VerifyError::DuplicateJsonKey(k)),
        Err(LookupError::Invalid) => Ok(None),
    }
}

impl Verifier {
    /// Decodes `secrets` as the profile says. An error names the secret's index, never its value.
    pub fn new(
        profile: Arc<Profile>,
        secrets: &[Secret],
        tolerance: Option<Duration>,
    ) -> Result<Self, String> {
        if secrets.is_empty() {
            return Err("at least one secret is needed".into());
        }
        let mut keys = Vec::with_capacity(secrets.len());
        let mut raw = Vec::with_capacity(secrets.len());
        for (i, s) in secrets.iter().enumerate() {
            if s.value.is_empty() {
                return Err(format!("secret {i} is empty"));
            }
            token::check_secret(profile.algorithm, &s.value).map_err(|e| format!("secret {i} {e}"))?;
            keys.push(
                Key::from_secret(profile.algorithm, profile.secret, &s.value)
                    .map_err(|e| format!("secret {i} {e}"))?,
            );
            raw.push(if profile.algorithm.is_public_key() {
                Vec::new()
            } else {
                profile.secret.decode(&s.value).map_err(|e| format!("secret {i} {e}"))?
            });
        }
        let tolerance = tolerance
            .or(profile.timestamp.as_ref().map(|t| t.tolerance))
            .unwrap_or(profile::DEFAULT_TOLERANCE);
        let tags = secrets
            .iter()
            .zip(&raw)
            .map(|(s, r)| {
                // The decoded key where there is one, so that spellings of one key agree.
                let key = if r.is_empty() { s.value.as_bytes() } else { r.as_slice() };
                let d = Sha256::new().chain_update(b"portcullis key tag\0").chain_update(key).finalize();
                d[..8].try_into().expect("8 bytes")
            })
            .collect();
        Ok(Verifier {
            profile,
            keys,
            raw,
            expires: secrets.iter().map(|s| s.expires_at).collect(),
            tags,
            tolerance,
        })
    }

    pub fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    /// The decoded bytes of secret `index` (PayPal's webhook id, SNS's topic ARN).
    pub(crate) fn secret_bytes(&self, index: usize) -> &[u8] {
        &self.raw[index]
    }

    /// The signed-timestamp tolerance: the route's, else the profile's.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Hex HMAC-SHA256 of `data` under secret `index`: Zoom's endpoint-validation answer.
    pub fn hmac_sha256_hex(&self, index: usize, data: &[u8]) -> Option<String> {
        let key = self.raw.get(index).filter(|k| !k.is_empty())?;
        Some(hex::encode(mac::MacKey::new(mac::Algorithm::HmacSha256, key).digest([data]).as_bytes()))
    }

    /// Each secret's expiry (unix seconds), by configured index; `None`: it does not expire.
    pub fn secret_expiries(&self) -> &[Option<u64>] {
        &self.expires
    }

    /// Secrets that verify at `now`, with their configured index.
    pub fn active_keys(&self, now: u64) -> impl Iterator<Item = (usize, &Key)> {
        self.keys.iter().enumerate().filter(move |(i, _)| self.expires[*i].is_none_or(|e| now < e))
    }

    /// Whether the signed payload includes the URL the provider sent to.
    pub fn needs_url(&self) -> bool {
        self.profile.payload.uses(&Segment::Url)
            || matches!(self.profile.canonical, Some(Canonical::Twilio | Canonical::Mandrill))
    }

    /// The signature value as sent: from the first header alias present, or from the body.
    fn signature_value<'a>(&self, input: &Input<'a>) -> Result<Cow<'a, str>, VerifyError> {
        let p = &*self.profile;
        if let Some(ptr) = &p.signature_json {
            return json_value(ptr, input.body)?
                .ok_or_else(|| VerifyError::MissingSignature(format!("body {ptr}")));
        }
        if let Some(field) = &p.signature_form {
            return form_value(input, field)?
                .ok_or_else(|| VerifyError::MissingSignature(p.signature_place()));
        }
        for name in &p.headers {
            if let Some(v) = single(input.headers, name)? {
                return v.to_str().map(Cow::Borrowed).map_err(|_| VerifyError::NotAscii);
            }
        }
        Err(VerifyError::MissingSignature(p.signature_place()))
    }

    /// The raw timestamp value, if the profile has one.
    fn timestamp_value<'a>(
        &self,
        input: &Input<'a>,
        in_header: Option<&'a str>,
    ) -> Result<Option<Cow<'a, str>>, VerifyError> {
        let Some(rule) = &self.profile.timestamp else { return Ok(None) };
        Ok(match &rule.source {
            TimestampSource::Signature => in_header.map(Cow::Borrowed),
            TimestampSource::Header(h) => single(input.headers, h)?
                .map(|v| v.to_str().map(Cow::Borrowed))
                .transpose()
                .map_err(|_| VerifyError::BadTimestamp)?,
            TimestampSource::Json(ptr) => json_value(ptr, input.body)?,
            TimestampSource::Form(field) => form_value(input, field)?,
        })
    }

    /// Checks the request's signature with every active secret, then its signed timestamp.
    pub fn verify(&self, input: &Input<'_>) -> Result<Verified, VerifyError> {
        let p = &*self.profile;
        if p.body == BodyFormat::Json && !is_json_container(input.body) {
            return Err(VerifyError::NotJson);
        }
        if p.certificate.is_some() {
            // The certificate must be fetched first: see `certificate::prepare`.
            return Err(VerifyError::Certificate("needs its certificate fetched".into()));
        }
        if p.canonical == Some(Canonical::Adyen) {
            return canonical::adyen(self, input);
        }
        if p.algorithm.is_shared_secret() {
            return token::verify(self, input);
        }
        let value;
        let parsed = match p.header_set {
            anyof::HeaderSet::First => {
                value = self.signature_value(input)?;
                p.header_format.parse(&value)?
            }
            ref set => set.collect(&p.headers, input.headers, &p.header_format)?,
        };
        let algorithm = match &p.algorithm_header {
            Some(a) => a.pick(input.headers)?,
            None => p.algorithm,
        };
        let timestamp = self.timestamp_value(input, parsed.timestamp)?;
        let id = if p.payload.uses(&Segment::Id) {
            match &p.id {
                IdSource::Header(h) => Some(
                    first_of(input.headers, h)?
                        .and_then(|v| v.to_str().ok())
                        .filter(|v| !v.is_empty())
                        .ok_or(VerifyError::MissingId)?,
                ),
                _ => None,
            }
        } else {
            None
        };
        if p.payload.uses(&Segment::Timestamp) && timestamp.is_none() {
            return Err(VerifyError::MissingTimestamp);
        }
        let mut json = Vec::new();
        for seg in p.payload.segments() {
            if let Segment::Json(ptr) = seg {
                json.push(
                    json_value(ptr, input.body)?.ok_or_else(|| VerifyError::MissingField(ptr.to_string()))?,
                );
            }
        }
        if let Some(rule) = &p.jwt {
            let token = parsed.signatures().first().copied().unwrap_or_default();
            let secret_index =
                jwt::verify(rule, self.active_keys(input.now), token, input.body, input.now, self.tolerance)?;
            return Ok(Verified { secret_index });
        }
        let mut form = Vec::new();
        if p.payload.uses_form() {
            let parsed = form::Form::parse(input.headers, input.body)?;
            for seg in p.payload.segments() {
                if let Segment::Form(name) = seg {
                    form.push(
                        parsed
                            .get(name)?
                            .ok_or_else(|| VerifyError::MissingField(format!("form {name}")))?
                            .to_string(),
                    );
                }
            }
        }
        let canonical = match p.canonical {
            Some(Canonical::Twilio) => Some(canonical::twilio(input)?),
            Some(Canonical::Mandrill) => Some(canonical::mandrill(input)?),
            _ => None,
        };
        // A file part is content no signature over named fields covers: only profiles whose
        // provider sends attachments accept one (they are forwarded unsigned).
        if (p.signature_form.is_some() || p.payload.uses_form()) && !p.form_files {
            if let Some(name) = form::Form::parse(input.headers, input.body)?.file_part() {
                return Err(form::FormError::File(name).into());
            }
        }

        // Decode every candidate once; only those of a possible signature length can match.
        // MACs, Ed25519 and DER ECDSA fit the stack buffers; RSA signatures get heap ones.
        let lens = algorithm.signature_len();
        let mut small = [[0u8; MAX_DIGEST + 8]; header::MAX_SIGNATURES];
        let mut large: Vec<Vec<u8>> = Vec::new();
        let mut found = [0usize; header::MAX_SIGNATURES];
        let mut usable = 0;
        for cand in parsed.signatures() {
            let buf: &mut [u8] = if *lens.end() <= MAX_DIGEST + 8 {
                &mut small[usable]
            } else {
                large.push(vec![0u8; MAX_SIGNATURE + 8]);
                large.last_mut().expect("pushed")
            };
            match p.encoding.decode(cand.as_bytes(), buf) {
                Some(n) if lens.contains(&n) => {
                    found[usable] = n;
                    usable += 1;
                }
                _ => {
                    large.truncate(usable);
                }
            }
        }
        if usable == 0 {
            return Err(VerifyError::Undecodable(p.encoding.name()));
        }
        let mut cands: [&[u8]; header::MAX_SIGNATURES] = [&[]; header::MAX_SIGNATURES];
        for (i, c) in cands.iter_mut().enumerate().take(usable) {
            *c = match large.get(i) {
                Some(d) => &d[..found[i]],
                None => &small[i][..found[i]],
            };
        }
        let cands = &cands[..usable];

        let parts = Parts {
            body: input.body,
            timestamp: timestamp.as_deref().unwrap_or("").as_bytes(),
            id: id.unwrap_or("").as_bytes(),
            method: input.method.as_str().as_bytes(),
            url: input.url.as_bytes(),
            json: &json,
            form: &form,
        };
        let try_key = |key: &Key| match &canonical {
            Some(payload) => key.matches([payload.as_slice()], cands),
            None => key.matches(parts.iter(p.payload.segments()), cands),
        };
        let matched = if algorithm == p.algorithm {
            self.active_keys(input.now).find(|(_, key)| try_key(key)).map(|(i, _)| i)
        } else {
            // The sender chose another of the allowed HMACs: key it from the same secret.
            self.active_keys(input.now)
                .map(|(i, _)| i)
                .find(|&i| try_key(&Key::Mac(mac::MacKey::new(algorithm, &self.raw[i]))))
        };
        let secret_index = matched.ok_or(VerifyError::Mismatch)?;

        if let Some(rule) = p.timestamp.as_ref().filter(|r| r.check) {
            let raw = timestamp.ok_or(VerifyError::MissingTimestamp)?;
            timestamp::check(&raw, rule.unit, input.now, self.tolerance.as_secs()).map_err(|e| match e {
                timestamp::TimestampError::Unreadable(_) => VerifyError::BadTimestamp,
                timestamp::TimestampError::Stale(a, t) => VerifyError::Stale(a, t),
                timestamp::TimestampError::Future(a, t) => VerifyError::Future(a, t),
            })?;
        }
        Ok(Verified { secret_index })
    }

    /// The event's id as the profile defines it: a header, JSON pointers into the body
    /// (joined with `:`; a wildcard pointer's matches joined with `,`), or the body's
    /// SHA-256. A body without the id, or not JSON, falls back to its SHA-256, which a retry
    /// repeats exactly; but where the signature covers decoded form fields rather than the
    /// body's bytes, the fallback is the digest of what is signed ([`Self::signed_form_id`]),
    /// so that a re-encoded body is the same event. `url` is the signed URL, as verified.
    pub fn event_id<'a>(
        &self,
        url: &str,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> Result<Cow<'a, str>, VerifyError> {
        if let Some(items) = self.batch_items(body)? {
            let ids: Vec<Cow<'a, str>> = items.into_iter().map(|i| i.id).collect();
            return Ok(if ids.len() == 1 {
                ids.into_iter().next().expect("one")
            } else {
                Cow::Owned(ids.join(","))
            });
        }
        match &self.profile.id {
            IdSource::Header(h) => {
                if let Some(v) = first_of(headers, h)?.and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
                {
                    return Ok(Cow::Borrowed(v));
                }
            }
            IdSource::Json(ptrs) => {
                if let Some(id) = json_id(ptrs, body)? {
                    return Ok(id);
                }
            }
            IdSource::BodySha256 => {}
        }
        if let Some(id) = self.signed_form_id(url, headers, body)? {
            return Ok(Cow::Owned(id));
        }
        Ok(Cow::Owned(body_sha256(body)))
    }

    /// For profiles whose signature covers decoded form fields, not the body's bytes (the
    /// Mandrill canonicaliser, Twilio's on a form body, a payload of `{form:…}` fields such as
    /// Braintree's `bt_payload` or Mailgun Routes' timestamp and token): the digest of the
    /// signed string, which every encoding of one signed body shares. `None` for the others,
    /// and for a payload that also names a value this cannot rebuild (a header's timestamp).
    pub fn signed_form_id(
        &self,
        url: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<String>, VerifyError> {
        let p = &*self.profile;
        let input = Input { method: &Method::POST, url, headers, body, now: 0 };
        match p.canonical {
            Some(Canonical::Mandrill) => {
                return Ok(Some(form::signed_id([canonical::mandrill(&input)?.as_slice()])))
            }
            Some(Canonical::Twilio) if canonical::twilio_form(headers) => {
                return Ok(Some(form::signed_id([canonical::twilio(&input)?.as_slice()])))
            }
            Some(_) => return Ok(None),
            None => {}
        }
        if !p.payload.uses_form() {
            return Ok(None);
        }
        let parsed = form::Form::parse(headers, body)?;
        let mut signed: Vec<Cow<'_, [u8]>> = Vec::new();
        for seg in p.payload.segments() {
            signed.push(match seg {
                Segment::Literal(b) => Cow::Borrowed(&b[..]),
                Segment::Form(name) => Cow::Owned(
                    parsed
                        .get(name)?
                        .ok_or_else(|| VerifyError::MissingField(format!("form {name}")))?
                        .as_bytes()
                        .to_vec(),
                ),
                Segment::Url => Cow::Borrowed(url.as_bytes()),
                Segment::Body => Cow::Borrowed(body),
                _ => return Ok(None),
            });
        }
        Ok(Some(form::signed_id(signed.iter().map(|s| &**s))))
    }

    /// The items of a batched body (profiles with `id.batch`), each with its event id and its
    /// place in the body; `None` for other profiles, or when the body has no such array.
    pub fn batch_items<'a>(&self, body: &'a [u8]) -> Result<Option<Vec<BatchItem<'a>>>, VerifyError> {
        let (Some(batch), IdSource::Json(ptrs)) = (&self.profile.batch, &self.profile.id) else {
            return Ok(None);
        };
        let elements = match batch.lookup_elements(body) {
            Ok(Some(e)) if !e.is_empty() => e,
            Ok(_) | Err(LookupError::Invalid) => return Ok(None),
            Err(LookupError::DuplicateKey(k)) => return Err(VerifyError::DuplicateJsonKey(k)),
        };
        let base = body.as_ptr() as usize;
        let mut items = Vec::with_capacity(elements.len());
        for e in elements {
            let raw = e.get().as_bytes();
            let start = raw.as_ptr() as usize - base;
            let id = json_id(ptrs, raw)?.unwrap_or_else(|| Cow::Owned(body_sha256(raw)));
            items.push(BatchItem { id, span: start..start + raw.len() });
        }
        Ok(Some(items))
    }

    /// The signed one-time value (nonce) of profiles that guard against replay with one.
    pub fn replay_nonce<'a>(
        &self,
        headers: &HeaderMap,
        body: &'a [u8],
    ) -> Result<Option<Cow<'a, str>>, VerifyError> {
        if let Some(field) = &self.profile.replay_form {
            let form = form::Form::parse(headers, body)?;
            return Ok(form.get(field)?.map(|v| Cow::Owned(v.to_string())));
        }
        match &self.profile.replay {
            Some(ptr) => json_value(ptr, body),
            None => Ok(None),
        }
    }

    /// The store key remembering a replay nonce verified by secret `index`: scoped to the
    /// signing key, not the route, since a signature block made with one key verifies at
    /// every route that has the key. The key is named by a truncated, domain-separated
    /// SHA-256 of it, never by the secret itself.
    pub fn nonce_key(&self, index: usize, nonce: &str) -> String {
        let tag = self.tags.get(index).copied().unwrap_or_default();
        format!("nonce:{}:{nonce}", hex::encode(tag))
    }

    /// Computes what the provider would send for `body`, as header lines; for `portcullis
    /// sign` and tests. Profiles whose signature lives in the body, and public Ed25519 keys,
    /// cannot be signed this way (`None`).
    pub fn sign(
        &self,
        method: &Method,
        url: &str,
        body: &[u8],
        id: &str,
        timestamp: u64,
    ) -> Option<Vec<(HeaderName, String)>> {
        let p = &*self.profile;
        if p.headers.is_empty() {
            return None;
        }
        if p.algorithm.is_shared_secret() {
            let secret = std::str::from_utf8(&self.raw[0]).ok()?;
            return Some(vec![(p.headers[0].clone(), token::header_value(p.algorithm, secret))]);
        }
        let ts_value = p.timestamp.as_ref().map(|t| t.unit).unwrap_or_default().render(timestamp);
        // Twilio signs a form unless the URL binds the body by its hash.
        let twilio_form = (p.canonical == Some(Canonical::Twilio) && !url.contains("bodySHA256="))
            || p.canonical == Some(Canonical::Mandrill);
        let mut headers = HeaderMap::new();
        if twilio_form {
            headers.insert(http::header::CONTENT_TYPE, canonical::FORM.parse().expect("valid"));
        }
        let input = Input { method, url, headers: &headers, body, now: timestamp };
        if let (Some(rule), Key::Jwt(secret)) = (&p.jwt, &self.keys[0]) {
            let token = jwt::sign(rule, secret, body, timestamp)?;
            return Some(vec![(p.headers[0].clone(), p.header_format.render(&token, None))]);
        }
        let sig = match p.canonical {
            Some(Canonical::Twilio) => self.keys[0].sign([canonical::twilio(&input).ok()?.as_slice()])?,
            Some(Canonical::Mandrill) => self.keys[0].sign([canonical::mandrill(&input).ok()?.as_slice()])?,
            _ => {
                let parts = Parts {
                    body,
                    timestamp: ts_value.as_bytes(),
                    id: id.as_bytes(),
                    method: method.as_str().as_bytes(),
                    url: url.as_bytes(),
                    json: &[],
                    form: &[],
                };
                if p.payload.uses_json() || p.payload.uses_form() {
                    return None;
                }
                self.keys[0].sign(parts.iter(p.payload.segments()))?
            }
        };
        let sig = p.encoding.encode(&sig);
        let embeds_ts = matches!(p.timestamp.as_ref().map(|t| &t.source), Some(TimestampSource::Signature));
        let mut out = vec![(
            p.headers[0].clone(),
            p.header_format.render(&sig, embeds_ts.then_some(ts_value.as_str())),
        )];
        if let Some(TimestampSource::Header(h)) = p.timestamp.as_ref().map(|t| &t.source) {
            out.push((h.clone(), ts_value.clone()));
        }
        if let IdSource::Header(h) = &p.id {
            out.push((h[0].clone(), id.to_string()));
        }
        if let Some(a) = &p.algorithm_header {
            out.push((a.header.clone(), a.name_of(p.algorithm)?.to_string()));
        }
        if twilio_form {
            out.push((http::header::CONTENT_TYPE, canonical::FORM.into()));
        }
        Some(out)
    }
}

/// The value of the body's form field `name`, read as the Content-Type says.
fn form_value<'a>(input: &Input<'_>, name: &str) -> Result<Option<Cow<'a, str>>, VerifyError> {
    let form = form::Form::parse(input.headers, input.body)?;
    Ok(form.get(name)?.map(|v| Cow::Owned(v.to_string())))
}

/// Joins the values of `ptrs` into one id; `None` when any is missing or the body is not JSON.
fn json_id<'a>(ptrs: &[Pointer], body: &'a [u8]) -> Result<Option<Cow<'a, str>>, VerifyError> {
    let mut joined: Option<Cow<'a, str>> = None;
    for ptr in ptrs {
        let v = if ptr.is_wildcard() {
            match ptr.lookup_all(body) {
                Ok(all) if !all.is_empty() => Some(Cow::Owned(all.join(","))),
                Ok(_) => None,
                Err(LookupError::DuplicateKey(k)) => return Err(VerifyError::DuplicateJsonKey(k)),
                Err(LookupError::Invalid) => None,
            }
        } else {
            json_value(ptr, body)?
        };
        let Some(v) = v.filter(|v| !v.is_empty()) else { return Ok(None) };
        joined = Some(match joined {
            None => v,
            Some(prev) => Cow::Owned(format!("{prev}:{v}")),
        });
    }
    Ok(joined)
}

/// Whether `body` is one JSON object or array (parsed without building it). Not a bare
/// scalar: a shifted scalar stays a scalar (`12345` → `2345`), while a proper prefix or suffix
/// of a container, or a container with bytes added before or after, has unbalanced brackets
/// or is no longer one document, so bytes moved across a signed seam cannot keep it a container.
fn is_json_container(body: &[u8]) -> bool {
    let start = body.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if !matches!(start.map(|i| body[i]), Some(b'{' | b'[')) {
        return false;
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    <serde::de::IgnoredAny as serde::Deserialize>::deserialize(&mut de).and_then(|_| de.end()).is_ok()
}

/// The value of a header that must appear at most once.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h http::HeaderValue>, VerifyError> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(VerifyError::DuplicateHeader(name.clone()));
    }
    Ok(first)
}

/// The value of the first of `names` present (aliases of one header), which must appear
/// at most once.
pub(crate) fn first_of<'h>(
    headers: &'h HeaderMap,
    names: &[HeaderName],
) -> Result<Option<&'h http::HeaderValue>, VerifyError> {
    for name in names {
        if let Some(v) = single(headers, name)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Lower-case hex SHA-256 of `body`.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::profile::ProfileSet;
    use super::*;
    use base64::Engine;

    /// A (verifying, signing) secret pair that suits the profile's secret encoding; `None`
    /// for public keys that portcullis cannot sign with (their vectors cover them).
    pub(crate) fn sample_secrets(p: &Profile) -> Option<(String, String)> {
        let b64 = base64::engine::general_purpose::STANDARD;
        Some(match p.secret {
            mac::SecretEncoding::Raw => ("secret".into(), "secret".into()),
            mac::SecretEncoding::WhsecBase64 => ("whsec_c2VjcmV0".into(), "whsec_c2VjcmV0".into()),
            mac::SecretEncoding::Hex => {
                ("00112233445566778899aabbccddeeff".into(), "00112233445566778899aabbccddeeff".into())
            }
            mac::SecretEncoding::Ed25519 => {
                let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
                (
                    format!("whpk_{}", b64.encode(sk.verifying_key().as_bytes())),
                    format!("whsk_{}", b64.encode(sk.to_bytes())),
                )
            }
            mac::SecretEncoding::Ed25519Hex
            | mac::SecretEncoding::Ed25519Base64
            | mac::SecretEncoding::SpkiBase64
            | mac::SecretEncoding::Pem => return None,
        })
    }

    fn verifier(name: &str, secrets: &[&str]) -> Verifier {
        let p = ProfileSet::builtin().get(name).unwrap().clone();
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::from(s.to_string())).collect();
        Verifier::new(p, &secrets, None).unwrap()
    }

    fn headers(list: &[(String, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn check(v: &Verifier, h: &HeaderMap, body: &[u8], now: u64) -> Result<Verified, VerifyError> {
        v.verify(&Input { method: &Method::POST, url: "https://example.com/hook", headers: h, body, now })
    }

    fn signed(v: &Verifier, body: &[u8], ts: u64) -> Vec<(String, String)> {
        v.sign(&Method::POST, "https://example.com/hook", body, "msg_1", ts)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn every_header_signed_builtin_verifies_its_own_output() {
        // Profiles whose timestamp lives in the body are covered by their vectors.
        let body_ts =
            |p: &Profile| matches!(p.timestamp.as_ref().map(|t| &t.source), Some(TimestampSource::Json(_)));
        // Shared-token schemes sign nothing: see `token`'s tests.
        let shared = |p: &Profile| p.algorithm.is_shared_secret();
        for p in ProfileSet::builtin().iter().filter(|p| !p.headers.is_empty() && !body_ts(p) && !shared(p)) {
            let Some((verify_with, sign_with)) = sample_secrets(p) else { continue };
            let signer = verifier(&p.name, &[&sign_with]);
            let v = verifier(&p.name, &[&verify_with]);
            let body = br#"[{"id":"evt_1","event_id":"e1","event":{"id":"x"},"idempotency_key":"k"}]"#;
            let now = 1_000_000;
            let h = headers(&signed(&signer, body, now));
            assert_eq!(check(&v, &h, body, now), Ok(Verified { secret_index: 0 }), "{}", p.name);
            assert!(check(&v, &h, b"[{}]", now).is_err(), "{} tampered", p.name);
        }
    }

    /// Re-encodings of one url-encoded body: each decodes to the same fields.
    const MANDRILL_BODY: &[u8] = b"mandrill_events=%5B%7B%22event%22%3A%22send%22%7D%5D&z=a+b";
    const MANDRILL_REENCODED: [&[u8]; 5] = [
        b"mandrill_events=%5b%7b%22event%22%3a%22send%22%7d%5d&z=a+b",
        b"mandrill_events=[{\"event\":\"send\"}]&z=a%20b",
        b"mandrill_events=%5B%7B%22event%22%3A%22send%22%7D%5D&z=a+b&",
        b"z=a+b&mandrill_events=%5B%7B%22event%22%3A%22send%22%7D%5D",
        b"&&mandrill_%65vents=%5B%7B%22event%22%3A%22send%22%7D%5D&&z=a+b",
    ];

    #[test]
    fn every_encoding_of_a_signed_form_has_one_id() {
        let v = verifier("mandrill", &["k"]);
        let h = headers(&signed(&v, MANDRILL_BODY, 0));
        let url = "https://example.com/hook";
        let id = v.event_id(url, &h, MANDRILL_BODY).unwrap();
        assert_ne!(id, body_sha256(MANDRILL_BODY), "the id is not the raw body's digest");
        for body in MANDRILL_REENCODED {
            assert!(check(&v, &h, body, 0).is_ok(), "{}", String::from_utf8_lossy(body));
            assert_eq!(v.event_id(url, &h, body).unwrap(), id, "{}", String::from_utf8_lossy(body));
        }
        // Another event is another id; so is the same body signed for another URL.
        assert_ne!(v.event_id(url, &h, b"mandrill_events=%5B%5D").unwrap(), id);
        assert_ne!(v.event_id("https://example.com/other", &h, MANDRILL_BODY).unwrap(), id);
        // Mandrill sends url-encoded forms only: multipart (with its file parts) is refused.
        let mut mp = h.clone();
        mp.insert(http::header::CONTENT_TYPE, "multipart/form-data; boundary=B".parse().unwrap());
        let multipart = b"--B\r\nContent-Disposition: form-data; name=\"mandrill_events\"\r\n\r\n[]\r\n--B--";
        assert_eq!(check(&v, &mp, multipart, 0), Err(VerifyError::Form(form::FormError::NotUrlencoded)));
        // A field with an empty name adds to no signed string a reader would agree on.
        assert_eq!(
            check(&v, &h, b"mandrill_events=%5B%5D&=x", 0),
            Err(VerifyError::Form(form::FormError::EmptyName))
        );
    }

    #[test]
    fn form_field_payloads_are_identified_by_what_they_sign() {
        let form = |body: &'static [u8]| {
            let mut h = HeaderMap::new();
            h.insert(http::header::CONTENT_TYPE, form::URLENCODED.parse().unwrap());
            (h, body)
        };
        // Braintree signs bt_payload: a re-encoded payload, or another bt_signature list, is the
        // same event; another payload is another.
        let bt = verifier("braintree", &["00112233445566778899aabbccddeeff"]);
        let (h, a) = form(b"bt_signature=pk%7Caa&bt_payload=PGE%2B%0A");
        let id = bt.event_id("", &h, a).unwrap();
        assert_eq!(bt.event_id("", &h, b"bt_payload=PGE%2b%0a&bt_signature=pk|aa%26pk2|bb&").unwrap(), id);
        assert_ne!(bt.event_id("", &h, b"bt_signature=pk%7Caa&bt_payload=PGF%2B%0A").unwrap(), id);
        // Mailgun Routes signs timestamp and token: the message around them is not the id.
        let mg = verifier("mailgun-routes", &["k"]);
        let (h, a) = form(b"subject=a&timestamp=1&token=t&signature=00");
        let id = mg.event_id("", &h, a).unwrap();
        assert_eq!(mg.event_id("", &h, b"timestamp=1&token=t&subject=b&signature=11").unwrap(), id);
        assert_ne!(mg.event_id("", &h, b"timestamp=1&token=u&signature=00").unwrap(), id);
        // Twilio's form without its id header: the digest of the signed parameters.
        let tw = verifier("twilio", &["k"]);
        let (h, a) = form(b"CallSid=CA1&To=%2B1");
        let id = tw.event_id("https://e/x", &h, a).unwrap();
        assert_eq!(tw.event_id("https://e/x", &h, b"To=%2b1&CallSid=CA1&").unwrap(), id);
        // A JSON profile keeps the body's SHA-256.
        let ps = verifier("paylent", &["k"]);
        assert_eq!(ps.event_id("", &HeaderMap::new(), b"x").unwrap(), body_sha256(b"x"));
    }

    #[test]
    fn file_parts_are_refused_unless_the_profile_takes_attachments() {
        let file = b"--B\r\nContent-Disposition: form-data; name=\"bt_signature\"\r\n\r\npk|aa\r\n\
--B\r\nContent-Disposition: form-data; name=\"bt_payload\"\r\n\r\nPGE+\r\n\
--B\r\nContent-Disposition: form-data; name=\"x\"; filename=\"x.bin\"\r\n\r\nUNSIGNED\r\n--B--";
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, "multipart/form-data; boundary=B".parse().unwrap());
        let bt = verifier("braintree", &["00112233445566778899aabbccddeeff"]);
        assert_eq!(check(&bt, &h, file, 0), Err(VerifyError::Form(form::FormError::File("x".into()))));
        assert!(ProfileSet::builtin().get("mailgun-routes").unwrap().form_files);
    }

    #[test]
    fn stale_and_future_signed_timestamps_are_refused() {
        let v = verifier("stripe", &["whsec_test"]);
        let h = headers(&signed(&v, b"{}", 1_000_000));
        assert_eq!(check(&v, &h, b"{}", 1_000_300), Ok(Verified { secret_index: 0 }));
        assert_eq!(check(&v, &h, b"{}", 1_000_301), Err(VerifyError::Stale(301, 300)));
        assert_eq!(check(&v, &h, b"{}", 999_000), Err(VerifyError::Future(1000, 300)));
    }

    #[test]
    fn unsigned_timestamp_is_never_checked() {
        // Paymento's X-Paymento-Timestamp is not signed: a late retry must still pass.
        let v = verifier("paymento", &["s"]);
        let h = headers(&signed(&v, b"{}", 1_000_000));
        assert!(check(&v, &h, b"{}", 9_000_000).is_ok());
    }

    #[test]
    fn second_secret_matches_with_its_index_and_expired_secrets_do_not() {
        let old = verifier("paylent", &["old"]);
        let v = verifier("paylent", &["new", "old"]);
        let h = headers(&signed(&old, b"{}", 0));
        assert_eq!(check(&v, &h, b"{}", 0), Ok(Verified { secret_index: 1 }));
        let p = ProfileSet::builtin().get("paylent").unwrap().clone();
        let expiring = Verifier::new(
            p,
            &[Secret::from("new".to_string()), Secret { value: "old".into(), expires_at: Some(100) }],
            None,
        )
        .unwrap();
        assert_eq!(check(&expiring, &h, b"{}", 99), Ok(Verified { secret_index: 1 }));
        assert_eq!(check(&expiring, &h, b"{}", 100), Err(VerifyError::Mismatch));
        let input = Input { method: &Method::POST, url: "", headers: &h, body: b"{}", now: 100 };
        let why = diagnose::diagnose(&expiring, &input).join("\n");
        assert!(why.contains("secret 1 matches, but it has expired"), "{why}");
    }

    #[test]
    fn duplicate_signature_header_is_ambiguous() {
        let v = verifier("paylent", &["s"]);
        let mut list = signed(&v, b"{}", 0);
        list.push(list[0].clone());
        let e = check(&v, &headers(&list), b"{}", 0).unwrap_err();
        assert!(e.is_ambiguous(), "{e}");
    }

    #[test]
    fn event_ids() {
        let v = verifier("paymento", &["s"]);
        let h = HeaderMap::new();
        assert_eq!(v.event_id("", &h, br#"{"event":{"id":"evt_9"}}"#).unwrap(), "evt_9");
        assert_eq!(v.event_id("", &h, b"not json").unwrap(), body_sha256(b"not json"));
        assert!(v.event_id("", &h, br#"{"event":{"id":"a","id":"b"}}"#).unwrap_err().is_ambiguous());
        let ps = verifier("paysafe", &["s"]);
        assert_eq!(ps.event_id("", &h, b"x").unwrap(), body_sha256(b"x"));
        let gc = verifier("gocardless", &["s"]);
        assert_eq!(gc.event_id("", &h, br#"{"events":[{"id":"EV1"},{"id":"EV2"}]}"#).unwrap(), "EV1,EV2");
        // Shopify's Events API names the id header without the `X-`: either spelling is read.
        let shopify = verifier("shopify", &["s"]);
        for name in ["Shopify-Webhook-Id", "X-Shopify-Webhook-Id"] {
            let h = headers(&[(name.to_string(), "wh-1".to_string())]);
            assert_eq!(shopify.event_id("", &h, b"{}").unwrap(), "wh-1", "{name}");
        }
        let twice =
            headers(&[("Shopify-Webhook-Id".into(), "a".into()), ("Shopify-Webhook-Id".into(), "b".into())]);
        assert!(shopify.event_id("", &twice, b"{}").unwrap_err().is_ambiguous());
        let adyen = verifier("adyen", &["00ff"]);
        let body = br#"{"notificationItems":[{"NotificationRequestItem":{"pspReference":"P1","eventCode":"CAPTURE"}}]}"#;
        assert_eq!(adyen.event_id("", &h, body).unwrap(), "P1:CAPTURE");
    }

    #[test]
    fn diagnosis_work_is_bounded_whatever_the_header_count_and_body_size() {
        let v = verifier("paylent", &["s1", "s2"]);
        let forged = |body: &[u8], extra: usize| {
            let mut list = vec![("X-Paylent-Signature".to_string(), format!("sha256={}", "ab".repeat(32)))];
            for i in 0..extra {
                list.push((format!("X-Sig-{i}"), "cd".repeat(32)));
            }
            let h = headers(&list);
            let input = Input { method: &Method::POST, url: "", headers: &h, body, now: 0 };
            assert_eq!(v.verify(&input), Err(VerifyError::Mismatch));
            diagnose::diagnose_counted(&v, &input)
        };
        // A small JSON body: a fixed number of MACs per secret, however many headers.
        let small = br#"{"b":1,"a":[1,2,{"c":"d"}]}"#;
        let (few, many) = (forged(small, 0), forged(small, 95));
        assert_eq!(few.macs, many.macs, "headers cost comparisons, not MACs");
        assert!(many.macs <= 14 * 2, "{} MACs", many.macs);
        // A 1 MiB body with 95 signature-like headers: one MAC per secret, as verifying it.
        let big = vec![b'x'; 1 << 20];
        let d = forged(&big, 95);
        assert_eq!(d.macs, 2, "{:?}", d.lines);
        let text = d.lines.join("\n");
        assert!(text.contains("not tried") && text.contains("first 32 other headers"), "{text}");
    }

    #[test]
    fn explain_detects_a_body_re_serialised_in_its_own_key_order() {
        let v = verifier("paylent", &["s"]);
        // Signed compact with unsorted keys; arrives pretty-printed (the keys kept in order).
        let compact = r#"{"zeta":1,"alpha":{"y":[1,2.50,"é\n"],"x":null},"mid":true}"#;
        let h = headers(&signed(&v, compact.as_bytes(), 0));
        let doc: serde_json::Value = serde_json::from_str(compact).unwrap();
        let pretty = "{\n  \"zeta\": 1,\n  \"alpha\": {\n    \"y\": [\n      1,\n      2.50,\n      \"é\\n\"\n    ],\n    \"x\": null\n  },\n  \"mid\": true\n}";
        assert_eq!(serde_json::from_str::<serde_json::Value>(pretty).unwrap(), doc);
        let input = Input { method: &Method::POST, url: "", headers: &h, body: pretty.as_bytes(), now: 0 };
        let why = diagnose::diagnose(&v, &input).join("\n");
        assert!(why.contains("re-serialised (compact, keys in the body's order)"), "{why}");
        // Signed spaced with sorted keys (as Python's json.dumps(sort_keys=True)); arrives compact.
        let spaced = r#"{"alpha": {"x": null, "y": [1, 2.50, "é\n"]}, "mid": true, "zeta": 1}"#;
        let h = headers(&signed(&v, spaced.as_bytes(), 0));
        let input = Input { method: &Method::POST, url: "", headers: &h, body: compact.as_bytes(), now: 0 };
        let why = diagnose::diagnose(&v, &input).join("\n");
        assert!(why.contains("re-serialised (spaced, keys sorted)"), "{why}");
    }

    #[test]
    fn verifier_debug_never_prints_a_secret() {
        for (name, secret) in [("paylent", "s3cr3t-value-xyz"), ("adyen", "00ff00ff00ff00ff")] {
            let v = verifier(name, &[secret]);
            let secret_value = Secret::from(secret.to_string());
            let shown = format!("{v:?} {v:#?} {secret_value:?}");
            assert!(shown.contains(name), "{shown}");
            assert!(!shown.contains(secret), "{shown}");
            // Nor the decoded bytes, in any form Debug would print them.
            let decoded = v.raw[0].clone();
            assert!(!shown.contains(&format!("{decoded:?}")[1..8]), "{shown}");
        }
    }

    #[test]
    fn diagnosis_names_near_misses() {
        let v = verifier("paylent", &["s"]);
        let body = br#"{"a": 1, "b": 2}"#;
        // Signed as base64 instead of hex.
        let digest = mac::MacKey::new(mac::Algorithm::HmacSha256, b"s").digest([&body[..]]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest.as_bytes());
        let h = headers(&[("X-Paylent-Signature".into(), format!("sha256={b64}"))]);
        let input = Input { method: &Method::POST, url: "", headers: &h, body, now: 0 };
        assert!(v.verify(&input).is_err());
        let why = diagnose::diagnose(&v, &input).join("\n");
        assert!(why.contains("read as base64"), "{why}");
        // Signed over a compact body that was pretty-printed on the way.
        let compact = br#"{"a":1,"b":2}"#;
        let h = headers(&signed(&v, compact, 0));
        let input = Input { method: &Method::POST, url: "", headers: &h, body, now: 0 };
        let why = diagnose::diagnose(&v, &input).join("\n");
        assert!(why.contains("re-serialised"), "{why}");
        assert!(!why.contains(&h["x-paylent-signature"].to_str().unwrap()[7..]), "no signature values");
    }
}
