//! Signatures sent as a JWT (JWS compact, HMAC-SHA256) whose claims bind the body by its
//! hash (Netlify's `sha256`, Vonage's `payload_hash`). The algorithm is pinned by the
//! profile, never read from the token: `none` and every other `alg` are refused. The token's
//! signature is checked by `jsonwebtoken`; the claims (body hash, issuer, times) here.

use super::mac::{Encoding, Key};
use super::VerifyError;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Tokens longer than this are refused before decoding.
pub const MAX_TOKEN: usize = 8 * 1024;

/// Leeway for `exp` and `nbf`, for clocks that drift (jsonwebtoken's default).
pub const LEEWAY: u64 = 60;

/// The `signature.jwt` block of a profile, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// When given, the `iss` claim must equal it.
    issuer: Option<String>,
    /// The claim holding the body's hash.
    body_hash: RawBodyHash,
    /// Refuse tokens without `iat` (when the provider always sends it).
    #[serde(default)]
    require_iat: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBodyHash {
    claim: String,
    algorithm: BodyHashAlgorithm,
    encoding: Encoding,
}

/// How the body is hashed into its claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BodyHashAlgorithm {
    Sha256,
}

/// A validated `signature.jwt` block.
#[derive(Debug, Clone)]
pub struct JwtRule {
    pub issuer: Option<String>,
    /// The claim whose value is the body's SHA-256.
    pub body_hash_claim: String,
    pub body_hash_encoding: Encoding,
    pub require_iat: bool,
}

impl RawJwt {
    pub fn validate(self) -> Result<JwtRule, String> {
        if self.body_hash.claim.is_empty() {
            return Err("signature.jwt.body_hash.claim cannot be empty".into());
        }
        if self.issuer.as_deref() == Some("") {
            return Err("signature.jwt.issuer cannot be empty; leave it out to accept any".into());
        }
        let BodyHashAlgorithm::Sha256 = self.body_hash.algorithm;
        Ok(JwtRule {
            issuer: self.issuer,
            body_hash_claim: self.body_hash.claim,
            body_hash_encoding: self.body_hash.encoding,
            require_iat: self.require_iat,
        })
    }
}

fn validation() -> jsonwebtoken::Validation {
    // HS256 only. Times and issuer are checked below against the injected clock, so that
    // they answer to the route's tolerance and to tests' fixed "now".
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v
}

/// Verifies `token` with the first of `keys` whose signature matches, then its claims;
/// returns that key's index.
pub fn verify<'k>(
    rule: &JwtRule,
    keys: impl Iterator<Item = (usize, &'k Key)>,
    token: &str,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> Result<usize, VerifyError> {
    if token.len() > MAX_TOKEN || token.split('.').count() != 3 {
        return Err(VerifyError::Undecodable("JWT"));
    }
    let validation = validation();
    let mut found = None;
    for (i, key) in keys {
        let Key::Jwt(secret) = key else { continue };
        let decoding = jsonwebtoken::DecodingKey::from_secret(secret);
        match jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &validation) {
            Ok(data) => {
                found = Some((i, data.claims));
                break;
            }
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => continue,
            Err(_) => return Err(VerifyError::Undecodable("JWT (HS256)")),
        }
    }
    let (index, claims) = found.ok_or(VerifyError::Mismatch)?;
    check_claims(rule, &claims, body, now, tolerance)?;
    Ok(index)
}

fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
            .map(Some)
            .ok_or(VerifyError::BadTimestamp),
    }
}

fn check_claims(
    rule: &JwtRule,
    claims: &Map<String, Value>,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    // The body, by its hash, in constant time.
    let sent = claims
        .get(&rule.body_hash_claim)
        .and_then(Value::as_str)
        .ok_or(VerifyError::Claim("the body-hash claim is missing"))?;
    let mut buf = [0u8; 40];
    let n = rule
        .body_hash_encoding
        .decode(sent.as_bytes(), &mut buf)
        .ok_or(VerifyError::Claim("the body-hash claim is not a SHA-256"))?;
    let digest = Sha256::digest(body);
    if n != digest.len() || !bool::from(buf[..n].ct_eq(&digest)) {
        return Err(VerifyError::Claim("the body does not hash to the body-hash claim"));
    }
    if let Some(want) = &rule.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(want.as_str()) {
            return Err(VerifyError::Claim("the issuer (iss) is not the profile's"));
        }
    }

    let now = now as i64;
    let tol = tolerance.as_secs();
    let leeway = LEEWAY as i64;
    let exp = time_claim(claims, "exp")?;
    if exp.is_some_and(|exp| now > exp.saturating_add(leeway)) {
        return Err(VerifyError::Claim("the token has expired (exp)"));
    }
    if time_claim(claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(VerifyError::Claim("the token is not valid yet (nbf)"));
    }
    match time_claim(claims, "iat")? {
        None if rule.require_iat => return Err(VerifyError::MissingTimestamp),
        None => {}
        Some(iat) if iat > now => {
            let ahead = iat.abs_diff(now);
            if ahead > tol {
                return Err(VerifyError::Future(ahead, tol));
            }
        }
        // A profile that requires `iat` holds it to the tolerance whatever `exp` says (a
        // far-off `exp` must not stretch the replay window); otherwise, without `exp`, the
        // issue time bounds the token's life.
        Some(iat) if rule.require_iat || exp.is_none() => {
            let age = now.abs_diff(iat);
            if age > tol {
                return Err(VerifyError::Stale(age, tol));
            }
        }
        Some(_) => {}
    }
    Ok(())
}

/// The token a provider would send for `body` at `timestamp` (for `portcullis sign` and tests).
pub fn sign(rule: &JwtRule, secret: &[u8], body: &[u8], timestamp: u64) -> Option<String> {
    let mut claims = Map::new();
    if let Some(iss) = &rule.issuer {
        claims.insert("iss".into(), Value::String(iss.clone()));
    }
    claims.insert("iat".into(), Value::from(timestamp));
    claims.insert(
        rule.body_hash_claim.clone(),
        Value::String(rule.body_hash_encoding.encode(&Sha256::digest(body))),
    );
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn rule(require_iat: bool) -> JwtRule {
        JwtRule {
            issuer: Some("netlify".into()),
            body_hash_claim: "sha256".into(),
            body_hash_encoding: Encoding::Hex,
            require_iat,
        }
    }

    fn key(s: &str) -> Key {
        Key::Jwt(s.as_bytes().to_vec())
    }

    fn run(r: &JwtRule, token: &str, body: &[u8], now: u64) -> Result<usize, VerifyError> {
        let keys = [key("other"), key("secret")];
        verify(r, keys.iter().enumerate(), token, body, now, Duration::from_secs(300))
    }

    fn token(header: &str, claims: &str, secret: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signing_input = format!("{}.{}", b64.encode(header), b64.encode(claims));
        let mac = super::super::mac::MacKey::new(super::super::mac::Algorithm::HmacSha256, secret)
            .digest([signing_input.as_bytes()]);
        format!("{signing_input}.{}", b64.encode(mac.as_bytes()))
    }

    #[test]
    fn a_required_iat_is_held_to_the_tolerance_even_with_a_far_exp() {
        let rule = JwtRule {
            issuer: None,
            body_hash_claim: "payload_hash".into(),
            body_hash_encoding: super::super::mac::Encoding::Hex,
            require_iat: true,
        };
        let body = b"{}";
        let hash = hex::encode(Sha256::digest(body));
        let now: i64 = 1_800_000_000;
        let claims = |iat: i64, exp: i64| {
            let v = serde_json::json!({"iat": iat, "exp": exp, "payload_hash": hash});
            v.as_object().unwrap().clone()
        };
        let tol = Duration::from_secs(300);
        let old = claims(now - 86_400, now + 365 * 86_400);
        assert_eq!(check_claims(&rule, &old, body, now as u64, tol), Err(VerifyError::Stale(86_400, 300)));
        let fresh = claims(now - 10, now + 365 * 86_400);
        assert_eq!(check_claims(&rule, &fresh, body, now as u64, tol), Ok(()));
    }

    #[test]
    fn a_signed_token_binding_the_body_verifies_with_the_matching_key() {
        let r = rule(false);
        let t = sign(&r, b"secret", b"{}", 1000).unwrap();
        assert_eq!(run(&r, &t, b"{}", 1000), Ok(1));
        assert_eq!(
            run(&r, &t, b"{ }", 1000),
            Err(VerifyError::Claim("the body does not hash to the body-hash claim"))
        );
        let wrong = sign(&r, b"nope", b"{}", 1000).unwrap();
        assert_eq!(run(&r, &wrong, b"{}", 1000), Err(VerifyError::Mismatch));
        assert_eq!(run(&r, &t[..t.len() - 3], b"{}", 1000), Err(VerifyError::Mismatch));
        assert!(run(&r, "a.b", b"{}", 1000).is_err());
        assert!(run(&r, "", b"{}", 1000).is_err());
    }

    #[test]
    fn alg_none_and_other_algs_are_refused() {
        let r = rule(false);
        let claims = format!(r#"{{"iss":"netlify","sha256":"{}"}}"#, hex::encode(Sha256::digest(b"{}")));
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), b64.encode(&claims));
        assert!(run(&r, &none, b"{}", 0).is_err());
        // An HS512 token under the right secret is still refused: the profile pins HS256.
        let hs512 = token(r#"{"alg":"HS512","typ":"JWT"}"#, &claims, b"secret");
        assert!(run(&r, &hs512, b"{}", 0).is_err());
        let hs256 = token(r#"{"alg":"HS256","typ":"JWT"}"#, &claims, b"secret");
        assert_eq!(run(&r, &hs256, b"{}", 0), Ok(1));
    }

    #[test]
    fn issuer_and_times_are_checked() {
        let r = rule(true);
        let hash = hex::encode(Sha256::digest(b"x"));
        let t = |claims: String| token(r#"{"alg":"HS256"}"#, &claims, b"secret");
        let other_iss = t(format!(r#"{{"iss":"evil","sha256":"{hash}","iat":100}}"#));
        assert!(matches!(run(&r, &other_iss, b"x", 100), Err(VerifyError::Claim(_))));
        let no_iat = t(format!(r#"{{"iss":"netlify","sha256":"{hash}"}}"#));
        assert_eq!(run(&r, &no_iat, b"x", 100), Err(VerifyError::MissingTimestamp));
        assert_eq!(run(&rule(false), &no_iat, b"x", 100), Ok(1));
        let iat = t(format!(r#"{{"iss":"netlify","sha256":"{hash}","iat":1000}}"#));
        assert_eq!(run(&r, &iat, b"x", 1300), Ok(1));
        assert_eq!(run(&r, &iat, b"x", 1301), Err(VerifyError::Stale(301, 300)));
        assert_eq!(run(&r, &iat, b"x", 600), Err(VerifyError::Future(400, 300)));
        let exp = t(format!(r#"{{"iss":"netlify","sha256":"{hash}","iat":1000,"exp":5000}}"#));
        // Where iat is optional, exp bounds the token's life (with the leeway)…
        assert_eq!(run(&rule(false), &exp, b"x", 5060), Ok(1));
        assert!(matches!(run(&rule(false), &exp, b"x", 5061), Err(VerifyError::Claim(_))));
        // …where it is required, iat is held to the tolerance whatever exp says.
        assert_eq!(run(&r, &exp, b"x", 1300), Ok(1));
        assert_eq!(run(&r, &exp, b"x", 5060), Err(VerifyError::Stale(4060, 300)));
        let bad = t(format!(r#"{{"iss":"netlify","sha256":"{hash}","iat":"soon"}}"#));
        assert_eq!(run(&r, &bad, b"x", 1000), Err(VerifyError::BadTimestamp));
        let upper = t(format!(r#"{{"iss":"netlify","sha256":"{}","iat":1000}}"#, hash.to_uppercase()));
        assert_eq!(run(&r, &upper, b"x", 1000), Ok(1));
    }

    #[test]
    fn the_loader_refuses_jwt_profiles_that_do_not_bind_the_body() {
        use super::super::profile::Profile;
        let load = |sig: &str, extra: &str| {
            Profile::from_yaml("x.yaml", &format!("name: x\nsignature: {{headers: [A], {sig}}}\n{extra}"))
        };
        let jwt = "algorithm: jwt-hs256, jwt: {body_hash: {claim: h, algorithm: sha256, encoding: hex}}";
        let p = load(jwt, "").unwrap();
        assert_eq!(p.jwt.as_ref().map(|j| j.body_hash_claim.as_str()), Some("h"));
        let refused = |sig: &str, extra: &str, why: &str| {
            let e = load(sig, extra).unwrap_err();
            assert!(e.message.contains(why), "{why}: {e}");
        };
        refused("algorithm: jwt-hs256", "", "needs a jwt block");
        refused("algorithm: jwt-hs256, jwt: {issuer: x}", "", "body_hash");
        refused(&format!("{jwt}, encoding: hex"), "", "leave it out");
        refused(&format!("{jwt}, payload: '{{timestamp}}{{body}}'"), "timestamp: {header: T}", "payload");
        refused(jwt, "secret: pem", "do not go with");
        refused(
            "algorithm: hmac-sha256, encoding: hex, jwt: {body_hash: {claim: h, algorithm: sha256, encoding: hex}}",
            "",
            "belongs to the jwt-hs256",
        );
        refused(
            "algorithm: jwt-hs256, jwt: {body_hash: {claim: h, algorithm: md5, encoding: hex}}",
            "",
            "md5",
        );
        refused(
            "algorithm: jwt-hs256, jwt: {alg: none, body_hash: {claim: h, algorithm: sha256, encoding: hex}}",
            "",
            "alg",
        );
        // Public-key algorithms take public keys only, and HMAC never takes one.
        refused("algorithm: ecdsa-p256-sha256, encoding: base64", "", "do not go with");
        refused("algorithm: rsa-sha256, encoding: base64", "secret: ed25519-hex", "do not go with");
        refused("algorithm: hmac-sha256, encoding: hex", "secret: spki-base64", "do not go with");
        refused("algorithm: ed25519, encoding: hex", "secret: raw", "do not go with");
        refused("algorithm: hmac-sha256", "", "encoding is needed");
        assert!(load("algorithm: ed25519, encoding: hex", "secret: ed25519-hex").is_ok());
        assert!(load("algorithm: rsa-sha256, encoding: base64", "secret: pem").is_ok());
    }
}
