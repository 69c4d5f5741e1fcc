//! Schemes that authenticate the sender with a shared value instead of a signature: a static
//! token sent as a header's whole value (`algorithm: token`: GitLab, Telegram, Xendit, Okta,
//! Cloudflare), or HTTP Basic credentials (`algorithm: basic`, `Authorization: Basic …`:
//! Postmark, Chargebee), the route's secret being `user:password`.
//!
//! They give NO integrity (the body is not bound to anything: whoever sees one request can
//! send any body with its header) and NO replay protection (nothing signed, no time): the
//! idempotency key comes from the unsigned body. The value is compared in constant time, as
//! SHA-256 digests, so that neither its bytes nor its length leak through timing.

use super::mac::Algorithm;
use super::{Input, Verified, Verifier, VerifyError};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `a` and `b` are the same bytes, in time independent of where they differ and of
/// their lengths.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    bool::from(da.as_slice().ct_eq(db.as_slice()))
}

/// Checks a configured secret for a shared-value scheme; the error never shows the secret.
pub fn check_secret(alg: Algorithm, secret: &str) -> Result<(), &'static str> {
    match alg {
        Algorithm::Basic if !secret.contains(':') => {
            Err("must be user:password for HTTP Basic authentication")
        }
        Algorithm::Token if secret.chars().any(|c| c.is_ascii_control()) || secret.trim() != secret => {
            Err("cannot hold control characters or surrounding spaces: no header value could carry it")
        }
        _ => Ok(()),
    }
}

/// The credentials an `Authorization: Basic …` value carries, decoded; `None` when the value
/// is not Basic credentials (scheme name case-insensitive, RFC 7617).
fn basic_credentials(value: &str) -> Option<Vec<u8>> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let b64 = rest.trim_start_matches(' ');
    if b64.is_empty() || b64.len() > 4096 {
        return None;
    }
    let creds = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    creds.contains(&b':').then_some(creds)
}

/// Verifies a token or Basic request: the header's value against every active secret.
pub(super) fn verify(v: &Verifier, input: &Input<'_>) -> Result<Verified, VerifyError> {
    let p = &*v.profile;
    let value = v.signature_value(input)?;
    let presented: Vec<u8> = match p.algorithm {
        Algorithm::Basic => basic_credentials(&value).ok_or(VerifyError::Undecodable("HTTP Basic"))?,
        _ => value.as_bytes().to_vec(),
    };
    if presented.is_empty() {
        return Err(VerifyError::Undecodable("token"));
    }
    let mut matched = None;
    // Every secret is compared, whichever matches, so the time taken does not say which.
    for (i, _) in v.active_keys(input.now) {
        if same_secret(&presented, &v.raw[i]) && matched.is_none() {
            matched = Some(i);
        }
    }
    matched.map(|secret_index| Verified { secret_index }).ok_or(VerifyError::Mismatch)
}

/// The header line a sender would add, for `portcullis sign` and tests.
pub(super) fn header_value(alg: Algorithm, secret: &str) -> String {
    match alg {
        Algorithm::Basic => {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(secret.as_bytes()))
        }
        _ => secret.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::profile::Profile;
    use crate::verify::Secret;
    use http::{HeaderMap, Method};
    use std::sync::Arc;

    fn verifier(yaml: &str, secrets: &[&str]) -> Verifier {
        let p = Arc::new(Profile::from_yaml("t.yaml", yaml).unwrap());
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::from(s.to_string())).collect();
        Verifier::new(p, &secrets, None).unwrap()
    }

    fn check(v: &Verifier, headers: &[(&str, &str)]) -> Result<Verified, VerifyError> {
        let mut h = HeaderMap::new();
        for (k, val) in headers {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), val.parse().unwrap());
        }
        v.verify(&Input { method: &Method::POST, url: "", headers: &h, body: b"{}", now: 0 })
    }

    const TOKEN: &str = "name: t\nsignature: {headers: [X-Token], algorithm: token}\n";
    const BASIC: &str = "name: b\nsignature: {headers: [Authorization], algorithm: basic}\n";

    #[test]
    fn a_token_matches_any_configured_secret_exactly() {
        let v = verifier(TOKEN, &["new-token", "old-token"]);
        assert_eq!(check(&v, &[("X-Token", "new-token")]), Ok(Verified { secret_index: 0 }));
        assert_eq!(check(&v, &[("X-Token", "old-token")]), Ok(Verified { secret_index: 1 }));
        assert_eq!(check(&v, &[("X-Token", "new-toke")]), Err(VerifyError::Mismatch));
        assert_eq!(check(&v, &[("X-Token", "new-tokenX")]), Err(VerifyError::Mismatch));
        assert_eq!(check(&v, &[("X-Token", "")]), Err(VerifyError::Undecodable("token")));
        assert!(matches!(check(&v, &[]), Err(VerifyError::MissingSignature(_))));
        assert!(check(&v, &[("X-Token", "new-token"), ("X-Token", "new-token")]).unwrap_err().is_ambiguous());
    }

    #[test]
    fn basic_credentials_are_decoded_and_compared() {
        let v = verifier(BASIC, &["user:pass"]);
        let good = header_value(Algorithm::Basic, "user:pass");
        assert_eq!(check(&v, &[("Authorization", &good)]), Ok(Verified { secret_index: 0 }));
        let lower = good.replace("Basic", "basic");
        assert_eq!(check(&v, &[("Authorization", &lower)]), Ok(Verified { secret_index: 0 }));
        let wrong = header_value(Algorithm::Basic, "user:pas");
        assert_eq!(check(&v, &[("Authorization", &wrong)]), Err(VerifyError::Mismatch));
        for bad in ["Bearer dXNlcjpwYXNz", "Basic", "Basic !!!", "Basic dXNlcnBhc3M=", "user:pass"] {
            assert_eq!(
                check(&v, &[("Authorization", bad)]),
                Err(VerifyError::Undecodable("HTTP Basic")),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        let p = Arc::new(Profile::from_yaml("t.yaml", BASIC).unwrap());
        let e = Verifier::new(p, &[Secret::from("no-colon-secret".to_string())], None).unwrap_err();
        assert!(e.contains("user:password") && !e.contains("no-colon-secret"), "{e}");
        assert!(check_secret(Algorithm::Token, " padded").is_err());
        assert!(check_secret(Algorithm::Token, "ok").is_ok());
    }

    #[test]
    fn token_profiles_sign_nothing_and_say_so() {
        for (extra, what) in [
            ("  encoding: hex\n", "encoding"),
            ("  payload: '{body}'\n", "payload"),
            ("  prefix: 'x='\n", "prefix"),
        ] {
            let block = "name: t\nsignature:\n  headers: [X-Token]\n  algorithm: token\n";
            let e = Profile::from_yaml("t.yaml", &format!("{block}{extra}")).unwrap_err();
            assert!(e.message.contains(what) && e.message.contains("signs nothing"), "{e}");
        }
        let e = Profile::from_yaml("t.yaml", &format!("{TOKEN}timestamp: {{header: T}}\n")).unwrap_err();
        assert!(e.message.contains("timestamp"), "{e}");
        let e = Profile::from_yaml("t.yaml", &format!("{TOKEN}secret: hex\n")).unwrap_err();
        assert!(e.message.contains("secret"), "{e}");
        let p = Profile::from_yaml("t.yaml", TOKEN).unwrap();
        assert_eq!(p.payload.as_str(), "");
        // Encoding is required by signing schemes.
        let e = Profile::from_yaml("t.yaml", "name: t\nsignature: {headers: [X], algorithm: hmac-sha256}\n")
            .unwrap_err();
        assert!(e.message.contains("encoding"), "{e}");
    }

    #[test]
    fn same_secret_compares_whole_values() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
