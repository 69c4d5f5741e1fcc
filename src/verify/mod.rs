//! Signature verification: a [`Verifier`] is a profile with its route's decoded secrets, and
//! checks one request's raw body and headers in constant time.
//!
//! - [`header`]: parsing the signature header's value;
//! - [`template`]: the signed payload, fed to the MAC in parts;
//! - [`mac`]: algorithms, encodings and secrets.

pub mod header;
pub mod mac;
pub mod template;

use crate::profile::{IdSource, Profile, TimeUnit, TimestampSource};
use header::HeaderError;
use http::{HeaderMap, HeaderName, Method};
use mac::{MacKey, MAX_DIGEST};
use sha2::{Digest as _, Sha256};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use template::Segment;

/// Why a request's signature was refused. The messages are for logs: they never hold a
/// secret or a signature value, and callers only ever see a generic 401.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("no signature header (looked for {0})")]
    MissingSignature(String),
    #[error("the header {0} appears more than once")]
    DuplicateHeader(HeaderName),
    #[error("the signature header is not visible ASCII")]
    NotAscii,
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("no signature value decodes as a {0} digest of the expected length")]
    Undecodable(&'static str),
    #[error("no configured secret produces a matching signature")]
    Mismatch,
    #[error("the signed timestamp is missing")]
    MissingTimestamp,
    #[error("the signed timestamp is not an integer")]
    BadTimestamp,
    #[error("the signed timestamp is {0}s old, beyond the tolerance of {1}s")]
    Stale(u64, u64),
    #[error("the signed timestamp is {0}s in the future, beyond the tolerance of {1}s")]
    Future(u64, u64),
    #[error("the signed id header is missing")]
    MissingId,
    #[error("the body names the id key '{0}' twice")]
    DuplicateJsonKey(String),
}

impl VerifyError {
    /// True for requests that are ambiguous rather than unauthentic (answered 400, not 401).
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            VerifyError::DuplicateHeader(_) | VerifyError::DuplicateJsonKey(_)
        )
    }
}

/// What one request offers for verification.
pub struct Input<'a> {
    pub method: &'a Method,
    /// The URL the provider signed; only read by templates that use `{url}`.
    pub url: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Unix seconds.
    pub now: u64,
}

/// A verified request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Index of the route secret that matched (0 = the first configured).
    pub secret_index: usize,
}

/// A profile bound to a route's secrets.
#[derive(Debug, Clone)]
pub struct Verifier {
    profile: Arc<Profile>,
    keys: Vec<MacKey>,
    tolerance: Duration,
}

impl Verifier {
    /// Decodes `secrets` as the profile says. An error names the secret's index, never its value.
    pub fn new(
        profile: Arc<Profile>,
        secrets: &[String],
        tolerance: Option<Duration>,
    ) -> Result<Self, String> {
        if secrets.is_empty() {
            return Err("at least one secret is needed".into());
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                profile
                    .secret
                    .decode(s)
                    .map(|k| MacKey::new(profile.algorithm, &k))
                    .map_err(|e| format!("secret {i} {e}"))
            })
            .collect::<Result<_, _>>()?;
        let tolerance = tolerance
            .or(profile.timestamp.as_ref().map(|t| t.tolerance))
            .unwrap_or(crate::profile::DEFAULT_TOLERANCE);
        Ok(Verifier {
            profile,
            keys,
            tolerance,
        })
    }

    pub fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    /// Checks the request's signature with every secret, then its signed timestamp.
    pub fn verify(&self, input: &Input<'_>) -> Result<Verified, VerifyError> {
        let p = &*self.profile;
        let value = self.signature_header(input.headers)?;
        let value = value.to_str().map_err(|_| VerifyError::NotAscii)?;
        let parsed = p.header_format.parse(value)?;

        let timestamp = match &p.timestamp {
            None => None,
            Some(rule) => match &rule.source {
                TimestampSource::Signature => parsed.timestamp.map(Cow::Borrowed),
                TimestampSource::Header(h) => single(input.headers, h)?
                    .map(|v| v.to_str().map(Cow::Borrowed))
                    .transpose()
                    .map_err(|_| VerifyError::BadTimestamp)?,
                TimestampSource::Json(ptr) => match ptr.lookup(input.body) {
                    Ok(v) => v,
                    Err(crate::jsonptr::LookupError::DuplicateKey(k)) => {
                        return Err(VerifyError::DuplicateJsonKey(k))
                    }
                    Err(_) => None,
                },
            },
        };
        let id = if p.payload.uses(&Segment::Id) {
            match &p.id {
                IdSource::Header(h) => Some(
                    single(input.headers, h)?
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

        // Decode every candidate once; only those of the digest's exact length can match.
        let want = p.algorithm.digest_len();
        let mut decoded = [[0u8; MAX_DIGEST + 8]; header::MAX_SIGNATURES];
        let mut usable = 0;
        for cand in parsed.signatures() {
            let slot = &mut decoded[usable];
            if p.encoding.decode(cand.as_bytes(), slot) == Some(want) {
                usable += 1;
            }
        }
        if usable == 0 {
            return Err(VerifyError::Undecodable(p.encoding.name()));
        }

        let method = input.method.as_str().as_bytes();
        let ts = timestamp.as_deref().unwrap_or("").as_bytes();
        let id = id.unwrap_or("").as_bytes();
        let parts = || {
            p.payload.segments().iter().map(move |s| match s {
                Segment::Literal(b) => &b[..],
                Segment::Body => input.body,
                Segment::Timestamp => ts,
                Segment::Id => id,
                Segment::Method => method,
                Segment::Url => input.url.as_bytes(),
            })
        };
        let matched = self.keys.iter().position(|key| {
            let digest = key.digest(parts());
            decoded[..usable].iter().any(|c| digest.ct_eq(&c[..want]))
        });
        let secret_index = matched.ok_or(VerifyError::Mismatch)?;

        if let Some(rule) = p.timestamp.as_ref().filter(|r| r.check) {
            let raw = timestamp.ok_or(VerifyError::MissingTimestamp)?;
            let mut secs: i64 = raw.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
            if rule.unit == TimeUnit::Milliseconds {
                secs = secs.div_euclid(1000);
            }
            let tol = self.tolerance.as_secs();
            let now = input.now as i64;
            if secs < now {
                let age = now.abs_diff(secs);
                if age > tol {
                    return Err(VerifyError::Stale(age, tol));
                }
            } else {
                let ahead = secs.abs_diff(now);
                if ahead > tol {
                    return Err(VerifyError::Future(ahead, tol));
                }
            }
        }
        Ok(Verified { secret_index })
    }

    /// The first signature header alias present; present twice is refused.
    fn signature_header<'h>(
        &self,
        headers: &'h HeaderMap,
    ) -> Result<&'h http::HeaderValue, VerifyError> {
        for name in &self.profile.headers {
            if let Some(v) = single(headers, name)? {
                return Ok(v);
            }
        }
        Err(VerifyError::MissingSignature(
            self.profile
                .headers
                .iter()
                .map(HeaderName::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        ))
    }

    /// The event's id as the profile defines it: a header, JSON pointers into the body
    /// (joined with `:`), or the body's SHA-256. A JSON body without the id, or a body that
    /// is not JSON, falls back to the body's SHA-256, which a retry repeats exactly.
    pub fn event_id<'a>(
        &self,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> Result<Cow<'a, str>, VerifyError> {
        match &self.profile.id {
            IdSource::Header(h) => {
                if let Some(v) = single(headers, h)?
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                {
                    return Ok(Cow::Borrowed(v));
                }
            }
            IdSource::Json(ptrs) => {
                let mut joined: Option<Cow<'a, str>> = None;
                let mut complete = true;
                for ptr in ptrs {
                    match ptr.lookup(body) {
                        Ok(Some(v)) => {
                            joined = Some(match joined {
                                None => v,
                                Some(prev) => Cow::Owned(format!("{prev}:{v}")),
                            })
                        }
                        Ok(None) | Err(crate::jsonptr::LookupError::Invalid) => {
                            complete = false;
                            break;
                        }
                        Err(crate::jsonptr::LookupError::DuplicateKey(k)) => {
                            return Err(VerifyError::DuplicateJsonKey(k))
                        }
                    }
                }
                if let (true, Some(id)) = (complete, joined) {
                    if !id.is_empty() {
                        return Ok(id);
                    }
                }
            }
            IdSource::BodySha256 => {}
        }
        Ok(Cow::Owned(body_sha256(body)))
    }

    /// Computes what the provider would send for `body`, as header lines; for `portcullis sign`.
    pub fn sign(
        &self,
        method: &Method,
        url: &str,
        body: &[u8],
        id: &str,
        timestamp: u64,
    ) -> Vec<(HeaderName, String)> {
        let p = &*self.profile;
        let ts_value = match p.timestamp.as_ref().map(|t| t.unit) {
            Some(TimeUnit::Milliseconds) => (timestamp * 1000).to_string(),
            _ => timestamp.to_string(),
        };
        let parts = p.payload.segments().iter().map(|s| match s {
            Segment::Literal(b) => &b[..],
            Segment::Body => body,
            Segment::Timestamp => ts_value.as_bytes(),
            Segment::Id => id.as_bytes(),
            Segment::Method => method.as_str().as_bytes(),
            Segment::Url => url.as_bytes(),
        });
        let digest = self.keys[0].digest(parts);
        let sig = p.encoding.encode(digest.as_bytes());
        let embeds_ts = matches!(
            p.timestamp.as_ref().map(|t| &t.source),
            Some(TimestampSource::Signature)
        );
        let mut out = vec![(
            p.headers[0].clone(),
            p.header_format
                .render(&sig, embeds_ts.then_some(ts_value.as_str())),
        )];
        if let Some(TimestampSource::Header(h)) = p.timestamp.as_ref().map(|t| &t.source) {
            out.push((h.clone(), ts_value.clone()));
        }
        if let IdSource::Header(h) = &p.id {
            out.push((h.clone(), id.to_string()));
        }
        out
    }
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

/// Lower-case hex SHA-256 of `body`.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileSet;

    fn verifier(name: &str, secrets: &[&str]) -> Verifier {
        let p = ProfileSet::builtin().get(name).unwrap().clone();
        Verifier::new(
            p,
            &secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            None,
        )
        .unwrap()
    }

    fn headers(list: &[(String, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn check(v: &Verifier, h: &HeaderMap, body: &[u8], now: u64) -> Result<Verified, VerifyError> {
        v.verify(&Input {
            method: &Method::POST,
            url: "https://example.com/hook",
            headers: h,
            body,
            now,
        })
    }

    fn signed(v: &Verifier, body: &[u8], ts: u64) -> Vec<(String, String)> {
        v.sign(&Method::POST, "https://example.com/hook", body, "msg_1", ts)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn every_builtin_signs_and_verifies_its_own_output() {
        for p in ProfileSet::builtin().iter() {
            let secret = if p.secret == mac::SecretEncoding::WhsecBase64 {
                "whsec_c2VjcmV0"
            } else {
                "secret"
            };
            let v = verifier(&p.name, &[secret]);
            let body =
                br#"{"id":"evt_1","event_id":"e1","event":{"id":"x"},"idempotency_key":"k"}"#;
            let h = headers(&signed(&v, body, 1_000_000));
            assert_eq!(
                check(&v, &h, body, 1_000_000),
                Ok(Verified { secret_index: 0 }),
                "{}",
                p.name
            );
            assert!(
                check(&v, &h, b"{}", 1_000_000).is_err(),
                "{} tampered",
                p.name
            );
        }
    }

    #[test]
    fn stale_and_future_signed_timestamps_are_refused() {
        let v = verifier("stripe", &["whsec_test"]);
        let h = headers(&signed(&v, b"{}", 1_000_000));
        assert_eq!(
            check(&v, &h, b"{}", 1_000_300),
            Ok(Verified { secret_index: 0 })
        );
        assert_eq!(
            check(&v, &h, b"{}", 1_000_301),
            Err(VerifyError::Stale(301, 300))
        );
        assert_eq!(
            check(&v, &h, b"{}", 999_000),
            Err(VerifyError::Future(1000, 300))
        );
    }

    #[test]
    fn unsigned_timestamp_is_never_checked() {
        // Paymento's X-Paymento-Timestamp is not signed: a late retry must still pass.
        let v = verifier("paymento", &["s"]);
        let h = headers(&signed(&v, b"{}", 1_000_000));
        assert!(check(&v, &h, b"{}", 9_000_000).is_ok());
    }

    #[test]
    fn second_secret_matches_with_its_index() {
        let old = verifier("paylent", &["old"]);
        let v = verifier("paylent", &["new", "old"]);
        let h = headers(&signed(&old, b"{}", 0));
        assert_eq!(check(&v, &h, b"{}", 0), Ok(Verified { secret_index: 1 }));
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
        assert_eq!(
            v.event_id(&h, br#"{"event":{"id":"evt_9"}}"#).unwrap(),
            "evt_9"
        );
        assert_eq!(
            v.event_id(&h, b"not json").unwrap(),
            body_sha256(b"not json")
        );
        assert!(v
            .event_id(&h, br#"{"event":{"id":"a","id":"b"}}"#)
            .unwrap_err()
            .is_ambiguous());
        let ps = verifier("paysafe", &["s"]);
        assert_eq!(ps.event_id(&h, b"x").unwrap(), body_sha256(b"x"));
    }
}
