//! Certificate-URL schemes (PayPal, Amazon SNS): the request names, in a header or in its
//! body, the URL of an X.509 certificate whose RSA key signed it. This file reads the request
//! ([`prepare`]: the signed string, the signature, the certificate's URL, checked against the
//! profile's pinned hosts before anything is fetched) and checks the fetched certificate
//! ([`SigningCert::from_pem`]: chain, validity, names) and the signature ([`Pending::finish`]).
//! Fetching and caching the certificate is [`crate::cert_fetch`]'s job: this module does no I/O.

use super::profile::{IdSource, TimeUnit, TimestampRule, TimestampSource, DEFAULT_TOLERANCE};
use super::{Input, Verified, Verifier, VerifyError};
use crate::jsonptr::{LookupError, Pointer};
use base64::Engine as _;
use http::HeaderName;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::time::Duration;

/// Which certificate-URL scheme a profile uses; each fixes what is signed and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertScheme {
    /// PayPal: headers `PAYPAL-TRANSMISSION-{ID,TIME,SIG}`, `PAYPAL-CERT-URL`,
    /// `PAYPAL-AUTH-ALGO`; signed string `id|time|webhook id|crc32(body)`; the route's secret
    /// is the webhook id.
    Paypal,
    /// Amazon SNS: a JSON body carrying `Signature`, `SignatureVersion` (1: SHA-1, 2:
    /// SHA-256) and `SigningCertURL`; named fields signed in order per message type; the
    /// route's secret is the topic ARN it accepts.
    AmazonSns,
}

impl CertScheme {
    pub fn name(self) -> &'static str {
        match self {
            CertScheme::Paypal => "paypal",
            CertScheme::AmazonSns => "amazon-sns",
        }
    }
}

/// The `certificate:` key of a profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    scheme: CertScheme,
    /// The HTTPS hosts certificates are fetched from: exact names, or one `*` standing for a
    /// single label of letters, digits and '-' (`sns.*.amazonaws.com`).
    hosts: Vec<String>,
    /// The whole URL path, literal text and placeholders: `{hex}` (one or more hexadecimal
    /// digits), `{token}` (one or more letters, digits or '-'); e.g.
    /// `/SimpleNotificationService-{hex}.pem`. Nothing else is fetched.
    path_pattern: String,
    /// Names the signing certificate must carry (its CN or a DNS SAN), each matching this
    /// domain or a subdomain of it.
    subjects: Vec<String>,
    /// For schemes with a signed per-delivery timestamp (PayPal's transmission time).
    #[serde(default, with = "humantime_serde")]
    tolerance: Option<Duration>,
}

/// A validated `certificate:` rule.
#[derive(Debug, Clone)]
pub struct CertificateRule {
    pub scheme: CertScheme,
    pub hosts: Vec<String>,
    pub path_pattern: PathPattern,
    pub subjects: Vec<String>,
}

/// One piece of a [`PathPattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathPart {
    Literal(String),
    /// One or more hexadecimal digits.
    Hex,
    /// One or more letters, digits or '-'.
    Token,
}

impl PathPart {
    fn class(&self) -> Option<fn(u8) -> bool> {
        match self {
            PathPart::Literal(_) => None,
            PathPart::Hex => Some(|b: u8| b.is_ascii_hexdigit()),
            PathPart::Token => Some(|b: u8| b.is_ascii_alphanumeric() || b == b'-'),
        }
    }
}

/// The longest text a placeholder matches.
const MAX_PLACEHOLDER: usize = 128;

/// A certificate URL's whole path: literals and `{hex}` / `{token}` placeholders, each
/// placeholder ended by the path's end or by a literal that cannot continue it, so the path
/// matches in one pass, placeholders taking as much as they can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    parts: Vec<PathPart>,
}

impl PathPattern {
    pub fn parse(p: &str) -> Result<PathPattern, String> {
        let err = |why: &str| format!("certificate.path_pattern '{p}': {why}");
        if !p.starts_with('/') {
            return Err(err("must start with '/'"));
        }
        let mut parts: Vec<PathPart> = Vec::new();
        let mut rest = p;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('{') {
                let (name, r) = r.split_once('}').ok_or_else(|| err("'{' without '}'"))?;
                let part = match name {
                    "hex" => PathPart::Hex,
                    "token" => PathPart::Token,
                    _ => {
                        return Err(err(&format!(
                            "unknown placeholder {{{name}}} (known: {{hex}}, {{token}})"
                        )))
                    }
                };
                if parts.last().is_some_and(|l| l.class().is_some()) {
                    return Err(err("two placeholders side by side"));
                }
                parts.push(part);
                rest = r;
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let (lit, r) = rest.split_at(end);
                let ok = lit.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
                    && !lit.contains("..")
                    && !lit.contains("//");
                if !ok {
                    return Err(err(
                        "literal text is letters, digits and '-._~/', without '..' or '//' ('{' opens a placeholder)",
                    ));
                }
                if let Some(class) = parts.last().and_then(PathPart::class) {
                    if class(lit.as_bytes()[0]) {
                        return Err(err("a placeholder must be followed by a character it cannot match"));
                    }
                }
                parts.push(PathPart::Literal(lit.to_string()));
                rest = r;
            }
        }
        if !parts.iter().any(|x| x.class().is_some()) && p.ends_with('/') {
            return Err(err("names a directory, not a file"));
        }
        Ok(PathPattern { source: p.to_string(), parts })
    }

    /// The pattern as written in the profile.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `path` (no query) is one this pattern names.
    pub fn matches(&self, path: &str) -> bool {
        let mut rest = path.as_bytes();
        for part in &self.parts {
            match (part, part.class()) {
                (PathPart::Literal(l), _) => match rest.strip_prefix(l.as_bytes()) {
                    Some(r) => rest = r,
                    None => return false,
                },
                (_, Some(class)) => {
                    let n = rest.iter().take_while(|b| class(**b)).count();
                    if n == 0 || n > MAX_PLACEHOLDER {
                        return false;
                    }
                    rest = &rest[n..];
                }
                (_, None) => unreachable!("only literals have no class"),
            }
        }
        rest.is_empty()
    }
}

/// What a certificate profile's scheme fixes: its timestamp, its id and whether bodies are JSON.
pub struct SchemeParts {
    pub rule: CertificateRule,
    pub timestamp: Option<TimestampRule>,
    pub id: IdSource,
    pub json_body: bool,
}

fn is_label(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl RawCertificate {
    /// Checks the rule and derives what its scheme fixes.
    pub fn validate(self) -> Result<SchemeParts, String> {
        if self.hosts.is_empty() {
            return Err("certificate.hosts: name the HTTPS hosts certificates may come from".into());
        }
        for h in &self.hosts {
            let ok = h.split('.').count() >= 3
                && h.split('.').all(|l| l == "*" || is_label(l))
                && h.matches('*').count() <= 1
                && h.split('.').next_back().is_some_and(|l| l != "*");
            if !ok {
                return Err(format!(
                    "certificate.hosts: '{h}' must be a host name, with at most one '*' label not last"
                ));
            }
        }
        if self.subjects.is_empty() || self.subjects.iter().any(|s| !s.split('.').all(is_label)) {
            return Err(
                "certificate.subjects: name the domains the signing certificate must belong to".into()
            );
        }
        let path_pattern = PathPattern::parse(&self.path_pattern)?;
        let rule = CertificateRule {
            scheme: self.scheme,
            hosts: self.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            path_pattern,
            subjects: self.subjects.iter().map(|h| h.to_ascii_lowercase()).collect(),
        };
        Ok(match self.scheme {
            CertScheme::Paypal => SchemeParts {
                rule,
                timestamp: Some(TimestampRule {
                    source: TimestampSource::Header(HeaderName::from_static(PAYPAL_TIME)),
                    unit: TimeUnit::Seconds,
                    tolerance: self.tolerance.unwrap_or(DEFAULT_TOLERANCE),
                    check: true,
                }),
                id: IdSource::Header(vec![HeaderName::from_static(PAYPAL_ID)]),
                json_body: false,
            },
            CertScheme::AmazonSns => {
                if self.tolerance.is_some() {
                    return Err("certificate.tolerance: SNS signs no per-delivery time (Timestamp is the \
                         publish time, repeated by retries), so there is nothing to hold to it"
                        .into());
                }
                // Timestamp is the publish time, repeated by retries: not a replay guard.
                SchemeParts {
                    rule,
                    timestamp: None,
                    id: IdSource::Json(vec![Pointer::parse("/MessageId").expect("valid")]),
                    json_body: true,
                }
            }
        })
    }
}

impl CertificateRule {
    /// Where the signature is read, for tables.
    pub fn signature_place(&self) -> String {
        match self.scheme {
            CertScheme::Paypal => "header paypal-transmission-sig (certificate from paypal-cert-url)".into(),
            CertScheme::AmazonSns => "body /Signature (certificate from /SigningCertURL)".into(),
        }
    }

    /// The algorithm, for tables.
    pub fn algorithm(&self) -> &'static str {
        match self.scheme {
            CertScheme::Paypal => "rsa-sha256 (certificate)",
            CertScheme::AmazonSns => "rsa-sha1 | rsa-sha256 (certificate)",
        }
    }

    /// The rule with fewer hosts: each of `hosts` must be a host this rule pins.
    pub fn narrowed(&self, hosts: &[String]) -> Result<CertificateRule, String> {
        if hosts.is_empty() {
            return Err("name at least one host".into());
        }
        for h in hosts {
            let h = h.to_ascii_lowercase();
            if !(self.hosts.contains(&h) || (!h.contains('*') && self.host_allowed(&h))) {
                return Err(format!("'{h}' is not one of the provider's hosts ({})", self.hosts.join(", ")));
            }
        }
        Ok(CertificateRule { hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(), ..self.clone() })
    }

    /// Whether `host` (lower-case, without port) is one of the pinned hosts.
    pub fn host_allowed(&self, host: &str) -> bool {
        self.hosts.iter().any(|pattern| host_matches(pattern, host))
    }

    /// Whether a certificate name (CN or DNS SAN) belongs to one of the pinned domains.
    fn subject_allowed(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.subjects
            .iter()
            .any(|d| name == *d || name.strip_suffix(d.as_str()).is_some_and(|p| p.ends_with('.')))
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let (mut p, mut h) = (pattern.split('.'), host.split('.'));
    loop {
        match (p.next(), h.next()) {
            (None, None) => return true,
            (Some("*"), Some(l)) if l.len() >= 3 && is_label(l) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

const PAYPAL_ID: &str = "paypal-transmission-id";
const PAYPAL_TIME: &str = "paypal-transmission-time";
const PAYPAL_SIG: &str = "paypal-transmission-sig";
const PAYPAL_CERT_URL: &str = "paypal-cert-url";
const PAYPAL_ALGO: &str = "paypal-auth-algo";

/// A certificate URL that passed the pinning: `https://host[:port]/path`, without user info,
/// query, fragment or percent-escape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertUrl {
    pub url: String,
    /// Lower-case host, without the port.
    pub host: String,
    pub port: u16,
    /// The path, as sent (no query: [`CertUrl::parse`] refuses one).
    pub path: String,
}

/// Why a certificate URL does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUrlError {
    /// Not an `https://` URL with a host name.
    NotHttps,
    /// A shape no provider sends: user info, query, fragment, percent-escape.
    Shape(&'static str),
}

impl CertUrl {
    /// Parses an `https://host[:port]/path` URL. Refuses other schemes, IP literals in
    /// brackets, user info, a query, a fragment and any '%': a provider's certificate URL has
    /// none of them, and each would give one file many URLs (and cache keys) or hide a path.
    pub fn parse(url: &str) -> Result<CertUrl, CertUrlError> {
        if url.contains('%') {
            return Err(CertUrlError::Shape("it holds a percent-escape"));
        }
        if url.contains('#') {
            return Err(CertUrlError::Shape("it has a fragment"));
        }
        if url.contains('?') {
            return Err(CertUrlError::Shape("it has a query"));
        }
        let uri: http::Uri = url.parse().map_err(|_| CertUrlError::NotHttps)?;
        if uri.scheme_str() != Some("https") {
            return Err(CertUrlError::NotHttps);
        }
        let auth = uri.authority().ok_or(CertUrlError::NotHttps)?;
        if auth.as_str().contains('@') {
            return Err(CertUrlError::Shape("it has user info"));
        }
        let host = auth.host().to_ascii_lowercase();
        if host.is_empty() || host.starts_with('[') {
            return Err(CertUrlError::NotHttps);
        }
        let port = match auth.port() {
            Some(p) => p.as_str().parse().map_err(|_| CertUrlError::NotHttps)?,
            None => 443,
        };
        let path = uri.path().to_string();
        Ok(CertUrl { url: url.to_string(), host, port, path })
    }

    /// The URL in one canonical spelling (lower-case host, no default port): the cache key,
    /// so one file is fetched and cached once however its host is spelled.
    pub fn key(&self) -> String {
        format!("https://{}{}", self.authority(), self.path)
    }

    /// `host` or `host:port` when the port is not 443.
    pub fn authority(&self) -> String {
        if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Where certificates may come from besides the profile's pinned hosts: a route's test
/// override (`certificate_test_override`), never anything else.
pub trait ExtraHosts {
    /// Whether `authority` (`host` or `host:port`) is an extra allowed source.
    fn allows(&self, authority: &str) -> bool;
}

impl ExtraHosts for Vec<String> {
    fn allows(&self, authority: &str) -> bool {
        self.iter().any(|h| h.eq_ignore_ascii_case(authority))
    }
}

/// No source besides the profile's pinned hosts: every production route.
pub struct PinnedOnly;

impl ExtraHosts for PinnedOnly {
    fn allows(&self, _: &str) -> bool {
        false
    }
}

/// A request read and checked up to its signature: what must be fetched, and what to check
/// with the certificate once it is here.
pub struct Pending {
    pub url: CertUrl,
    alg: &'static dyn VerificationAlgorithm,
    signature: Vec<u8>,
    /// Per candidate secret (its index): the signed string.
    messages: Vec<(usize, Vec<u8>)>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("url", &self.url.url).finish_non_exhaustive()
    }
}

fn cert_err(what: &'static str) -> VerifyError {
    VerifyError::Certificate(what.into())
}

/// Reads the request as the profile's certificate scheme says; refuses, before anything is
/// fetched, a certificate URL off the pinned hosts, a stale or future signed time, a
/// missing or undecodable signature, and (SNS) a topic the route does not accept.
pub fn prepare(v: &Verifier, input: &Input<'_>, extra: &dyn ExtraHosts) -> Result<Pending, VerifyError> {
    let p = v.profile();
    let rule = p.certificate.as_ref().ok_or_else(|| cert_err("the profile has no certificate scheme"))?;
    match rule.scheme {
        CertScheme::Paypal => paypal(v, rule, input, extra),
        CertScheme::AmazonSns => sns(v, rule, input, extra),
    }
}

/// Checks the URL's shape, its host against the pinned hosts (or the route's test override)
/// and its whole path against the profile's `path_pattern`: only then may it be fetched.
fn pinned(rule: &CertificateRule, url: &str, extra: &dyn ExtraHosts) -> Result<CertUrl, VerifyError> {
    let parsed = CertUrl::parse(url).map_err(|e| match e {
        CertUrlError::NotHttps => VerifyError::CertificateHost,
        CertUrlError::Shape(why) => VerifyError::CertificateUrl(why),
    })?;
    let pinned = parsed.port == 443 && rule.host_allowed(&parsed.host);
    if !pinned && !extra.allows(&parsed.authority()) {
        return Err(VerifyError::CertificateHost);
    }
    if !rule.path_pattern.matches(&parsed.path) {
        return Err(VerifyError::CertificateUrl("its path is not the provider's certificate path"));
    }
    Ok(parsed)
}

fn header<'a>(input: &Input<'a>, name: &'static str) -> Result<Option<&'a str>, VerifyError> {
    let name = HeaderName::from_static(name);
    let v = super::single(input.headers, &name)?;
    v.map(|v| v.to_str().map_err(|_| VerifyError::NotAscii)).transpose().map(|v| v.filter(|s| !s.is_empty()))
}

fn decode_signature(s: &str) -> Result<Vec<u8>, VerifyError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    match b64.decode(s.trim()) {
        // RSA signatures are the modulus' length: below 1024 bits is no RSA key accepted here.
        Ok(sig) if sig.len() >= 128 => Ok(sig),
        _ => Err(VerifyError::Undecodable("base64 RSA")),
    }
}

/// Parses an RFC 3339 time into unix seconds.
fn rfc3339(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim().trim_end_matches('Z')).ok()?;
    if !s.trim().ends_with('Z') {
        return None;
    }
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_secs()).ok()
}

fn paypal(
    v: &Verifier,
    rule: &CertificateRule,
    input: &Input<'_>,
    extra: &dyn ExtraHosts,
) -> Result<Pending, VerifyError> {
    let sig = header(input, PAYPAL_SIG)?.ok_or_else(|| VerifyError::MissingSignature(PAYPAL_SIG.into()))?;
    let signature = decode_signature(sig)?;
    let id = header(input, PAYPAL_ID)?.ok_or(VerifyError::MissingId)?;
    let time = header(input, PAYPAL_TIME)?.ok_or(VerifyError::MissingTimestamp)?;
    let url = header(input, PAYPAL_CERT_URL)?.ok_or_else(|| cert_err("the certificate URL is missing"))?;
    match header(input, PAYPAL_ALGO)? {
        Some("SHA256withRSA") => {}
        _ => return Err(cert_err("PAYPAL-AUTH-ALGO is not SHA256withRSA")),
    }
    let url = pinned(rule, url, extra)?;
    // The transmission time is signed and set per transmission (each retry is a new one).
    let secs = rfc3339(time).ok_or(VerifyError::BadTimestamp)?;
    check_time(secs, input.now, v.tolerance())?;
    let crc = crc32fast::hash(input.body);
    let messages = v
        .active_keys(input.now)
        .map(|(i, _)| {
            let mut m = Vec::with_capacity(id.len() + time.len() + 64);
            m.extend_from_slice(id.as_bytes());
            m.push(b'|');
            m.extend_from_slice(time.as_bytes());
            m.push(b'|');
            m.extend_from_slice(v.secret_bytes(i));
            m.push(b'|');
            m.extend_from_slice(crc.to_string().as_bytes());
            (i, m)
        })
        .collect();
    Ok(Pending { url, alg: &signature::RSA_PKCS1_2048_8192_SHA256, signature, messages })
}

fn check_time(secs: i64, now: u64, tolerance: Duration) -> Result<(), VerifyError> {
    let tol = tolerance.as_secs();
    let now = now as i64;
    if secs < now && now.abs_diff(secs) > tol {
        return Err(VerifyError::Stale(now.abs_diff(secs), tol));
    }
    if secs > now && secs.abs_diff(now) > tol {
        return Err(VerifyError::Future(secs.abs_diff(now), tol));
    }
    Ok(())
}

/// The fields SNS signs, in order, per message type (`Subject` only when present).
fn sns_fields(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Notification" => Some(&["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]),
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            Some(&["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"])
        }
        _ => None,
    }
}

fn field<'b>(body: &'b [u8], name: &str) -> Result<Option<Cow<'b, str>>, VerifyError> {
    let ptr = Pointer::parse(&format!("/{name}")).expect("a plain key");
    match ptr.lookup(body) {
        Ok(v) => Ok(v),
        Err(LookupError::DuplicateKey(k)) => Err(VerifyError::DuplicateJsonKey(k)),
        Err(LookupError::Invalid) => Err(VerifyError::NotJson),
    }
}

fn sns(
    v: &Verifier,
    rule: &CertificateRule,
    input: &Input<'_>,
    extra: &dyn ExtraHosts,
) -> Result<Pending, VerifyError> {
    let body = input.body;
    if !super::is_json_container(body) || !body.trim_ascii_start().starts_with(b"{") {
        return Err(VerifyError::NotJson);
    }
    let required = |name: &'static str| -> Result<Cow<'_, str>, VerifyError> {
        field(body, name)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| VerifyError::MissingField(format!("/{name}")))
    };
    let sig = field(body, "Signature")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| VerifyError::MissingSignature("body /Signature".into()))?;
    let signature = decode_signature(&sig)?;
    let alg: &'static dyn VerificationAlgorithm = match required("SignatureVersion")?.as_ref() {
        "1" => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        "2" => &signature::RSA_PKCS1_2048_8192_SHA256,
        _ => return Err(cert_err("SignatureVersion is neither 1 nor 2")),
    };
    let url = pinned(rule, &required("SigningCertURL")?, extra)?;
    let kind = required("Type")?;
    let fields = sns_fields(&kind).ok_or_else(|| cert_err("Type is not an SNS message type"))?;
    let topic = required("TopicArn")?;
    // The topic is the route's: anyone can create a topic, and SNS signs its messages too.
    let accepted: Vec<usize> = v
        .active_keys(input.now)
        .map(|(i, _)| i)
        .filter(|&i| bool::from(subtle::ConstantTimeEq::ct_eq(v.secret_bytes(i), topic.as_bytes())))
        .collect();
    if accepted.is_empty() {
        return Err(VerifyError::Certificate("TopicArn is not the route's topic".into()));
    }
    let mut message = Vec::with_capacity(body.len() + 128);
    for &name in fields {
        let value = match name {
            "Subject" => match field(body, name)? {
                Some(s) => s,
                None => continue,
            },
            _ => required(name)?,
        };
        message.extend_from_slice(name.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(value.as_bytes());
        message.push(b'\n');
    }
    let messages = accepted.into_iter().map(|i| (i, message.clone())).collect();
    Ok(Pending { url, alg, signature, messages })
}

impl Pending {
    /// Checks the signature with the (validated) certificate's key.
    pub fn finish(&self, cert: &SigningCert) -> Result<Verified, VerifyError> {
        let key = UnparsedPublicKey::new(self.alg, &cert.rsa_public_key);
        self.messages
            .iter()
            .find(|(_, m)| key.verify(m, &self.signature).is_ok())
            .map(|(i, _)| Verified { secret_index: *i })
            .ok_or(VerifyError::Mismatch)
    }
}

/// A signing certificate that chained to a trusted root, was valid at the time asked and
/// names one of the profile's domains: its RSA public key (PKCS#1 DER).
#[derive(Clone)]
pub struct SigningCert {
    rsa_public_key: Vec<u8>,
}

impl std::fmt::Debug for SigningCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCert").finish_non_exhaustive()
    }
}

/// The OID of rsaEncryption.
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

impl SigningCert {
    /// Validates a fetched PEM file: its first certificate is the signer, the others
    /// intermediates; the chain must reach one of `anchors`, every certificate of it be
    /// valid at `now`, and the signer name one of the rule's domains with an RSA key.
    pub fn from_pem(
        pem: &[u8],
        rule: &CertificateRule,
        anchors: &[TrustAnchor<'_>],
        now: u64,
    ) -> Result<SigningCert, VerifyError> {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|_| cert_err("the certificate file is not PEM"))?;
        let (leaf, intermediates) =
            certs.split_first().ok_or_else(|| cert_err("the file holds no certificate"))?;
        let ee =
            webpki::EndEntityCert::try_from(leaf).map_err(|_| cert_err("the certificate does not parse"))?;
        let time = UnixTime::since_unix_epoch(Duration::from_secs(now));
        let chain = |usage| {
            ee.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                anchors,
                intermediates,
                time,
                usage,
                None,
                None,
            )
            .map(|_| ())
        };
        // Signing certificates name no usage, or a TLS one; either is accepted.
        chain(webpki::KeyUsage::server_auth()).or_else(|_| chain(webpki::KeyUsage::client_auth())).map_err(
            |e| match e {
                webpki::Error::CertExpired { .. } => cert_err("the certificate has expired"),
                webpki::Error::CertNotValidYet { .. } => cert_err("the certificate is not valid yet"),
                webpki::Error::UnknownIssuer => cert_err("the certificate does not chain to a trusted root"),
                _ => VerifyError::Certificate(format!("the certificate chain is invalid ({e:?})")),
            },
        )?;
        let (_, x509) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|_| cert_err("the certificate does not parse"))?;
        let cn = x509.subject().iter_common_name().filter_map(|c| c.as_str().ok().map(str::to_string));
        let sans: Vec<String> = match x509.subject_alternative_name() {
            Ok(Some(ext)) => ext
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if !cn.chain(sans).any(|n| rule.subject_allowed(&n)) {
            return Err(cert_err("the certificate names none of the provider's domains"));
        }
        let spki = x509.public_key();
        if spki.algorithm.algorithm.to_id_string() != RSA_ENCRYPTION {
            return Err(cert_err("the certificate's key is not RSA"));
        }
        Ok(SigningCert { rsa_public_key: spki.subject_public_key.data.to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(hosts: &[&str]) -> CertificateRule {
        CertificateRule {
            scheme: CertScheme::AmazonSns,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_pattern: PathPattern::parse("/SimpleNotificationService-{hex}.pem").unwrap(),
            subjects: vec!["amazonaws.com".into()],
        }
    }

    #[test]
    fn hosts_match_exactly_or_one_label_for_the_star() {
        let r = rule(&["sns.*.amazonaws.com", "api.paypal.com"]);
        assert!(r.host_allowed("sns.us-east-1.amazonaws.com"));
        assert!(r.host_allowed("api.paypal.com"));
        assert!(!r.host_allowed("sns.a.b.amazonaws.com"));
        assert!(!r.host_allowed("sns.us-east-1.amazonaws.com.evil.com"));
        assert!(!r.host_allowed("evilsns.us-east-1.amazonaws.com"));
        assert!(!r.host_allowed("sns.x.amazonaws.com"), "a region is three characters or more");
        assert!(!r.host_allowed("api.paypal.com.evil.com"));
    }

    #[test]
    fn a_route_narrows_the_hosts_and_never_widens_them() {
        let r = rule(&["sns.*.amazonaws.com", "api.paypal.com"]);
        let n = r.narrowed(&["sns.eu-west-1.amazonaws.com".into()]).unwrap();
        assert!(n.host_allowed("sns.eu-west-1.amazonaws.com"));
        assert!(!n.host_allowed("sns.us-east-1.amazonaws.com"));
        assert!(!n.host_allowed("api.paypal.com"));
        assert!(r.narrowed(&["sns.*.amazonaws.com".into()]).is_ok());
        assert!(r.narrowed(&["evil.example.com".into()]).is_err());
        assert!(r.narrowed(&["*.amazonaws.com".into()]).is_err());
        assert!(r.narrowed(&[]).is_err());
    }

    #[test]
    fn subjects_match_a_domain_or_its_subdomains() {
        let r = rule(&["a.b.c"]);
        assert!(r.subject_allowed("sns.amazonaws.com"));
        assert!(r.subject_allowed("amazonaws.com"));
        assert!(!r.subject_allowed("evilamazonaws.com"));
    }

    #[test]
    fn certificate_urls_are_https_without_userinfo_query_fragment_or_escapes() {
        let u = CertUrl::parse("https://SNS.us-east-1.amazonaws.com:443/SimpleNotificationService-1.pem")
            .unwrap();
        assert_eq!((u.host.as_str(), u.port), ("sns.us-east-1.amazonaws.com", 443));
        assert_eq!(u.key(), "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem");
        assert_eq!(CertUrl::parse("http://sns.us-east-1.amazonaws.com/x.pem"), Err(CertUrlError::NotHttps));
        for bad in [
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.pem#f",
            "https://sns.us-east-1.amazonaws.com/x.pem?n=1",
            "https://sns.us-east-1.amazonaws.com/x.pem?",
            "https://sns.us-east-1.amazonaws.com/%2e%2e/x.pem",
            "https://sns%2eus-east-1.amazonaws.com/x.pem",
        ] {
            assert!(matches!(CertUrl::parse(bad), Err(CertUrlError::Shape(_))), "{bad}");
        }
        assert_eq!(CertUrl::parse("https://localhost:8443/c").unwrap().authority(), "localhost:8443");
    }

    fn paypal_rule() -> CertificateRule {
        let mut r = rule(&["api.paypal.com"]);
        r.path_pattern = PathPattern::parse("/v1/notifications/certs/CERT-{token}").unwrap();
        r
    }

    #[test]
    fn pinning_refuses_other_hosts_and_ports() {
        let r = paypal_rule();
        let none = &PinnedOnly;
        assert!(pinned(&r, "https://api.paypal.com/v1/notifications/certs/CERT-1", none).is_ok());
        for bad in [
            "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
            "https://evil.com/v1/notifications/certs/CERT-1",
            "http://api.paypal.com/v1/notifications/certs/CERT-1",
        ] {
            assert_eq!(pinned(&r, bad, none).unwrap_err(), VerifyError::CertificateHost, "{bad}");
        }
        let extra = vec!["localhost:8443".to_string()];
        assert!(pinned(&r, "https://localhost:8443/v1/notifications/certs/CERT-1", &extra).is_ok());
        assert!(
            pinned(&r, "https://localhost:8443/other", &extra).is_err(),
            "the override widens hosts only"
        );
    }

    #[test]
    fn pinning_refuses_escapes_queries_and_paths_off_the_pattern() {
        let r = paypal_rule();
        let none = &PinnedOnly;
        for bad in [
            "https://api.paypal.com/other",
            "https://api.paypal.com/v1/notifications/certs/../../x",
            "https://api.paypal.com/v1/notifications/certs/%2e%2e/%2e%2e/v1/oauth2/token",
            "https://api.paypal.com/v1/notifications/certs/%2E%2E/x",
            "https://api.paypal.com/v1/notifications/certs/CERT-1?n=2",
            "https://api.paypal.com/v1/notifications/certs/CERT-1#x",
            "https://api.paypal.com/v1/notifications/certs/CERT-1/more",
            "https://api.paypal.com/v1/notifications/certs/CERT-",
            "https://api.paypal.com/v1/notifications/certs/CERT-a.b",
            "https://api.paypal.com/v1/notifications/certs/OTHER-1",
            "https://api.paypal.com/v1/notifications/certs/",
        ] {
            assert!(matches!(pinned(&r, bad, none), Err(VerifyError::CertificateUrl(_))), "{bad}");
        }
        let sns = rule(&["sns.*.amazonaws.com"]);
        let ok = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem";
        assert!(pinned(&sns, ok, none).is_ok());
        for bad in [
            "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-good.pem",
            "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-.pem",
            "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-7ff5.pem.pem",
            "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-7ff5.pem/x",
            "https://sns.us-west-2.amazonaws.com/x/SimpleNotificationService-7ff5.pem",
            "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe",
        ] {
            assert!(matches!(pinned(&sns, bad, none), Err(VerifyError::CertificateUrl(_))), "{bad}");
        }
        let long =
            format!("https://sns.us-west-2.amazonaws.com/SimpleNotificationService-{}.pem", "a".repeat(129));
        assert!(pinned(&sns, &long, none).is_err());
    }

    #[test]
    fn path_patterns_are_checked_when_loaded() {
        for bad in [
            "v1/{token}",
            "/a/{token}{hex}",
            "/a/{token}-x",
            "/a/{hex}b",
            "/a/{word}",
            "/a/{hex",
            "/a/../{hex}",
            "/a//{hex}",
            "/a/%2e{hex}",
            "/a?{hex}",
            "/a/",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
        let p = PathPattern::parse("/c/{token}.pem").unwrap();
        assert!(p.matches("/c/AB-1.pem") && !p.matches("/c/.pem") && !p.matches("/c/a"));
        assert_eq!(p.as_str(), "/c/{token}.pem");
        let p = PathPattern::parse("/c/fixed.pem").unwrap();
        assert!(p.matches("/c/fixed.pem") && !p.matches("/c/fixed.pemx"));
    }

    #[test]
    fn the_rule_refuses_nonsense() {
        let parse = |y: &str| {
            let y = y.replacen('{', "{path_pattern: '/c/{hex}.pem', ", 1);
            serde_yaml_ng::from_str::<RawCertificate>(&y).unwrap().validate().err()
        };
        assert!(parse("{scheme: paypal, hosts: [], subjects: [paypal.com]}").unwrap().contains("hosts"));
        assert!(parse("{scheme: paypal, hosts: ['*'], subjects: [paypal.com]}").is_some());
        assert!(parse("{scheme: paypal, hosts: [a.b.*], subjects: [paypal.com]}").is_some());
        assert!(parse("{scheme: paypal, hosts: [api.paypal.com], subjects: []}").is_some());
        assert!(parse(
            "{scheme: amazon-sns, hosts: [sns.*.amazonaws.com], subjects: [amazonaws.com], tolerance: 5m}"
        )
        .unwrap()
        .contains("tolerance"));
        assert!(serde_yaml_ng::from_str::<RawCertificate>(
            "{scheme: paypal, hosts: [a.b.c], subjects: [x], colour: red}"
        )
        .is_err());
        assert!(
            parse("{scheme: amazon-sns, hosts: [sns.*.amazonaws.com], subjects: [amazonaws.com]}").is_none()
        );
        assert!(
            serde_yaml_ng::from_str::<RawCertificate>(
                "{scheme: paypal, hosts: [api.paypal.com], subjects: [paypal.com]}"
            )
            .is_err(),
            "path_pattern is required"
        );
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(rfc3339("2016-02-18T20:01:35Z"), Some(1_455_825_695));
        assert_eq!(rfc3339("2016-02-18T20:01:35"), None);
        assert_eq!(rfc3339("yesterday"), None);
    }

    /// The fixtures of `tests/vectors/gen_cert.py`: a test CA, certificates for one RSA key.
    mod fixtures {
        pub const CA: &str = include_str!("../../tests/vectors/cert-fixtures/test-ca.pem");
        pub const KEY: &str = include_str!("../../tests/vectors/cert-fixtures/signer.key.pem");
        pub const PAYPAL: &str = include_str!("../../tests/vectors/cert-fixtures/paypal.pem");
        pub const EXPIRED: &str = include_str!("../../tests/vectors/cert-fixtures/paypal-expired.pem");
        pub const UNTRUSTED: &str = include_str!("../../tests/vectors/cert-fixtures/paypal-untrusted.pem");
        pub const OTHER_NAME: &str = include_str!("../../tests/vectors/cert-fixtures/paypal-other-name.pem");
    }

    const NOW: u64 = 1_796_025_600;

    fn anchors() -> Vec<TrustAnchor<'static>> {
        use rustls_pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(fixtures::CA.as_bytes()).unwrap();
        vec![webpki::anchor_from_trusted_cert(&der).unwrap().to_owned()]
    }

    fn paypal_verifier(secrets: &[&str]) -> Verifier {
        let p = super::super::profile::ProfileSet::builtin().get("paypal").unwrap().clone();
        let secrets: Vec<super::super::Secret> = secrets.iter().map(|s| s.to_string().into()).collect();
        Verifier::new(p, &secrets, None).unwrap()
    }

    fn rsa_sign(msg: &[u8]) -> String {
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(fixtures::KEY.as_bytes()).unwrap();
        let key = ring::rsa::KeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(&signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), msg, &mut sig).unwrap();
        base64::engine::general_purpose::STANDARD.encode(sig)
    }

    fn paypal_request(body: &[u8], time: &str, algo: &str) -> http::HeaderMap {
        let msg = format!("t-1|{time}|WH-ID|{}", crc32fast::hash(body));
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            (PAYPAL_ID, "t-1".to_string()),
            (PAYPAL_TIME, time.to_string()),
            (PAYPAL_SIG, rsa_sign(msg.as_bytes())),
            (PAYPAL_CERT_URL, "https://api.paypal.com/v1/notifications/certs/CERT-1".to_string()),
            (PAYPAL_ALGO, algo.to_string()),
        ] {
            h.insert(HeaderName::from_static(k), v.parse().unwrap());
        }
        h
    }

    fn check(v: &Verifier, h: &http::HeaderMap, body: &[u8], cert: &str) -> Result<Verified, VerifyError> {
        let input = Input { method: &http::Method::POST, url: "", headers: h, body, now: NOW };
        let pending = prepare(v, &input, &PinnedOnly)?;
        let rule = v.profile().certificate.as_ref().unwrap();
        pending.finish(&SigningCert::from_pem(cert.as_bytes(), rule, &anchors(), NOW)?)
    }

    #[test]
    fn paypal_signatures_verify_with_a_valid_certificate_only() {
        let v = paypal_verifier(&["WH-OLD", "WH-ID"]);
        let body = br#"{"id":"WH-1"}"#;
        let h = paypal_request(body, "2026-11-30T07:59:00Z", "SHA256withRSA");
        assert_eq!(check(&v, &h, body, fixtures::PAYPAL), Ok(Verified { secret_index: 1 }));
        assert_eq!(
            check(&paypal_verifier(&["WH-OLD"]), &h, body, fixtures::PAYPAL),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(check(&v, &h, b"{}", fixtures::PAYPAL), Err(VerifyError::Mismatch));
        let refused = |cert| match check(&v, &h, body, cert) {
            Err(VerifyError::Certificate(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(refused(fixtures::EXPIRED).contains("expired"));
        assert!(refused(fixtures::UNTRUSTED).contains("trusted root"));
        assert!(refused(fixtures::OTHER_NAME).contains("domains"));
        // The synchronous path never passes a certificate scheme.
        let input = Input { method: &http::Method::POST, url: "", headers: &h, body, now: NOW };
        assert!(matches!(v.verify(&input), Err(VerifyError::Certificate(_))));
    }

    #[test]
    fn paypal_requests_are_refused_before_fetching_when_malformed_or_stale() {
        let v = paypal_verifier(&["WH-ID"]);
        let body = b"{}";
        let input = |h: &http::HeaderMap| {
            let h = h.clone();
            move |v: &Verifier| {
                let input = Input { method: &http::Method::POST, url: "", headers: &h, body, now: NOW };
                prepare(v, &input, &PinnedOnly).map(|_| ())
            }
        };
        let ok = paypal_request(body, "2026-11-30T07:59:00Z", "SHA256withRSA");
        assert_eq!(input(&ok)(&v), Ok(()));
        let stale = paypal_request(body, "2026-11-30T07:54:59Z", "SHA256withRSA");
        assert_eq!(input(&stale)(&v), Err(VerifyError::Stale(301, 300)));
        let future = paypal_request(body, "2026-11-30T08:05:01Z", "SHA256withRSA");
        assert_eq!(input(&future)(&v), Err(VerifyError::Future(301, 300)));
        let sha1 = paypal_request(body, "2026-11-30T07:59:00Z", "SHA1withRSA");
        assert!(matches!(input(&sha1)(&v), Err(VerifyError::Certificate(_))));
        for (name, value) in [(PAYPAL_SIG, ""), (PAYPAL_SIG, "c2hvcnQ="), (PAYPAL_TIME, "yesterday")] {
            let mut h = ok.clone();
            h.insert(HeaderName::from_static(name), value.parse().unwrap());
            assert!(input(&h)(&v).is_err(), "{name}: {value:?}");
        }
        for name in [PAYPAL_SIG, PAYPAL_ID, PAYPAL_TIME, PAYPAL_CERT_URL, PAYPAL_ALGO] {
            let mut h = ok.clone();
            h.remove(name);
            assert!(input(&h)(&v).is_err(), "without {name}");
        }
        let mut h = ok.clone();
        h.insert(
            HeaderName::from_static(PAYPAL_CERT_URL),
            "https://evil.example/v1/notifications/certs/C".parse().unwrap(),
        );
        assert_eq!(input(&h)(&v), Err(VerifyError::CertificateHost));
        let mut h = ok.clone();
        h.append(HeaderName::from_static(PAYPAL_SIG), "x".parse().unwrap());
        assert!(input(&h)(&v).unwrap_err().is_ambiguous(), "a repeated header");
    }

    #[test]
    fn pem_that_is_not_a_certificate_is_refused() {
        let r = rule(&["a.b.c"]);
        assert!(SigningCert::from_pem(b"junk", &r, &[], 0).is_err());
        let e = SigningCert::from_pem(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &r,
            &[],
            0,
        )
        .unwrap_err();
        assert!(matches!(e, VerifyError::Certificate(_)), "{e}");
    }
}
