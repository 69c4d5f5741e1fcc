//! Keys (HMAC; Ed25519, ECDSA P-256 and RSA public keys, see [`super::asymmetric`]),
//! digests, and the decoding of signature values, compared in constant time.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// Largest digest we produce (SHA-512).
pub const MAX_DIGEST: usize = 64;

/// Largest signature we read (RSA-4096).
pub const MAX_SIGNATURE: usize = 512;

/// Standard base64 that accepts values with or without `=` padding.
const B64_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// URL-safe base64 (RFC 4648 §5) that accepts values with or without `=` padding; written
/// without padding, as JWS and most providers do.
const B64URL_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The MAC algorithm a profile signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
    HmacSha512,
    /// Ed25519 signatures; the route's "secrets" are public keys.
    Ed25519,
    /// ECDSA on P-256 over SHA-256, a DER signature; the route's "secrets" are public keys.
    EcdsaP256Sha256,
    /// RSA PKCS#1 v1.5 over SHA-256; the route's "secrets" are public keys.
    RsaSha256,
    /// A JWT (JWS compact) signed with HMAC-SHA256, whose claims bind the body by its hash.
    JwtHs256,
    /// No signature: a header's whole value is a shared token (see [`super::token`]).
    Token,
    /// No signature: `Authorization: Basic` credentials, the secret being `user:password`.
    Basic,
}

impl Algorithm {
    /// The lengths a decoded signature may have: one for MACs and Ed25519, a range for DER
    /// ECDSA (8 to 72 bytes) and RSA (a 2048- to 4096-bit modulus).
    pub fn signature_len(self) -> std::ops::RangeInclusive<usize> {
        match self {
            Algorithm::HmacSha1 => 20..=20,
            Algorithm::HmacSha256 | Algorithm::JwtHs256 => 32..=32,
            Algorithm::HmacSha512 | Algorithm::Ed25519 => 64..=64,
            Algorithm::EcdsaP256Sha256 => 8..=72,
            Algorithm::RsaSha256 => 256..=MAX_SIGNATURE,
            Algorithm::Token | Algorithm::Basic => 0..=0,
        }
    }

    /// True for algorithms verified with a public key, which cannot sign.
    pub fn is_public_key(self) -> bool {
        matches!(self, Algorithm::Ed25519 | Algorithm::EcdsaP256Sha256 | Algorithm::RsaSha256)
    }

    /// Whether a key written as `secret` suits this algorithm.
    pub fn accepts(self, secret: SecretEncoding) -> bool {
        use SecretEncoding as S;
        match self {
            Algorithm::HmacSha1 | Algorithm::HmacSha256 | Algorithm::HmacSha512 | Algorithm::JwtHs256 => {
                matches!(secret, S::Raw | S::WhsecBase64 | S::Hex)
            }
            Algorithm::Ed25519 => matches!(secret, S::Ed25519 | S::Ed25519Hex | S::Ed25519Base64),
            Algorithm::EcdsaP256Sha256 | Algorithm::RsaSha256 => matches!(secret, S::SpkiBase64 | S::Pem),
            Algorithm::Token | Algorithm::Basic => matches!(secret, S::Raw),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha512 => "hmac-sha512",
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::JwtHs256 => "jwt-hs256",
            Algorithm::Token => "token",
            Algorithm::Basic => "basic",
        }
    }

    /// True for the schemes that compare a shared value and sign nothing.
    pub fn is_shared_secret(self) -> bool {
        matches!(self, Algorithm::Token | Algorithm::Basic)
    }
}

/// How a signature value is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// Hexadecimal, either case.
    Hex,
    /// Standard base64, with or without padding.
    Base64,
    /// URL-safe base64 (`-` and `_`), with or without padding.
    Base64url,
    /// The value as sent, not decoded: shared-token schemes, which sign nothing.
    Plain,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
            Encoding::Base64url => "base64url",
            Encoding::Plain => "plain",
        }
    }

    /// Writes `digest` the way the provider would.
    pub fn encode(self, digest: &[u8]) -> String {
        match self {
            Encoding::Hex | Encoding::Plain => hex::encode(digest),
            Encoding::Base64 => B64_ANY_PAD.encode(digest),
            Encoding::Base64url => B64URL_ANY_PAD.encode(digest),
        }
    }

    /// Decodes a received signature value into `out`, returning the decoded length.
    /// Anything that is not cleanly decodable, or too long for `out`, is `None`.
    pub fn decode(self, value: &[u8], out: &mut [u8]) -> Option<usize> {
        match self {
            Encoding::Hex => {
                if value.is_empty() || !value.len().is_multiple_of(2) || value.len() > 2 * out.len() {
                    return None;
                }
                let n = value.len() / 2;
                hex::decode_to_slice(value, &mut out[..n]).ok()?;
                Some(n)
            }
            Encoding::Base64 | Encoding::Base64url => {
                // Bounded before decoding; `decode_slice` refuses what would not fit `out`.
                if value.is_empty() || value.len() > (out.len() / 3 + 1) * 4 {
                    return None;
                }
                let engine = if self == Encoding::Base64 { &B64_ANY_PAD } else { &B64URL_ANY_PAD };
                engine.decode_slice(value, &mut out[..]).ok()
            }
            // A shared token is compared as sent, never decoded as a digest.
            Encoding::Plain => None,
        }
    }
}

/// How a configured secret string becomes key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretEncoding {
    /// The secret's UTF-8 bytes, as written (Stripe's `whsec_…` secrets are used this way).
    #[default]
    Raw,
    /// `whsec_` followed by base64 (Standard Webhooks, Svix); the prefix is optional.
    WhsecBase64,
    /// The secret is hex-encoded key bytes (Adyen).
    Hex,
    /// An Ed25519 key: `whpk_` + base64 public key to verify, or `whsk_` + base64 secret
    /// key (32-byte seed or 64-byte keypair) to sign (Standard Webhooks `v1a`).
    Ed25519,
    /// An Ed25519 public key as 64 hex characters (Discord).
    Ed25519Hex,
    /// An Ed25519 public key as base64 of its 32 bytes (Telnyx).
    Ed25519Base64,
    /// A public key as base64 of its DER SubjectPublicKeyInfo, without PEM armour (SendGrid).
    SpkiBase64,
    /// A PEM public key: `BEGIN PUBLIC KEY` (SPKI) or, for RSA, `BEGIN RSA PUBLIC KEY`
    /// (PKCS#1) (Wise). Line breaks may be real or written as `\n`.
    Pem,
}

impl SecretEncoding {
    pub fn name(self) -> &'static str {
        match self {
            SecretEncoding::Raw => "raw",
            SecretEncoding::WhsecBase64 => "whsec-base64",
            SecretEncoding::Hex => "hex",
            SecretEncoding::Ed25519 => "ed25519",
            SecretEncoding::Ed25519Hex => "ed25519-hex",
            SecretEncoding::Ed25519Base64 => "ed25519-base64",
            SecretEncoding::SpkiBase64 => "spki-base64",
            SecretEncoding::Pem => "pem",
        }
    }

    /// Decodes a secret into key bytes. The error never contains the secret.
    pub fn decode(self, secret: &str) -> Result<Vec<u8>, &'static str> {
        let bytes = match self {
            SecretEncoding::Raw => secret.as_bytes().to_vec(),
            SecretEncoding::WhsecBase64 => {
                let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
                B64_ANY_PAD.decode(b64).map_err(|_| "is not valid base64 after the whsec_ prefix")?
            }
            SecretEncoding::Hex => hex::decode(secret).map_err(|_| "is not valid hex")?,
            SecretEncoding::Ed25519 => {
                let b64 = secret
                    .strip_prefix("whpk_")
                    .or_else(|| secret.strip_prefix("whsk_"))
                    .ok_or("must start with whpk_ (public key) or whsk_ (secret key)")?;
                B64_ANY_PAD.decode(b64).map_err(|_| "is not valid base64 after its prefix")?
            }
            SecretEncoding::Ed25519Hex => hex::decode(secret.trim()).map_err(|_| "is not valid hex")?,
            SecretEncoding::Ed25519Base64 | SecretEncoding::SpkiBase64 => {
                B64_ANY_PAD.decode(secret.trim()).map_err(|_| "is not valid base64")?
            }
            SecretEncoding::Pem => super::asymmetric::pem_der(secret)?.1,
        };
        if bytes.is_empty() {
            return Err("is empty");
        }
        Ok(bytes)
    }
}

/// A keyed MAC, initialised once per secret; cloning it per request skips re-deriving the
/// inner and outer pads.
#[derive(Clone)]
pub enum MacKey {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("MacKey(..)")
    }
}

/// A route's verification key: an HMAC key, or an Ed25519 key.
#[derive(Clone)]
pub enum Key {
    Mac(MacKey),
    Ed25519 {
        public: ed25519_dalek::VerifyingKey,
        /// Present only when the key was given as a secret key (`portcullis sign`).
        secret: Option<ed25519_dalek::SigningKey>,
    },
    /// An ECDSA P-256 or RSA public key: verifies only.
    Public(super::asymmetric::PublicKey),
    /// The HMAC-SHA256 key of a JWT's signature (see [`super::jwt`]).
    Jwt(Vec<u8>),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Builds a key from a configured secret string. Errors never contain the secret.
    pub fn from_secret(alg: Algorithm, encoding: SecretEncoding, secret: &str) -> Result<Key, &'static str> {
        if !alg.accepts(encoding) {
            return Err(match alg.is_public_key() {
                true => "is not a public key of the kind the profile verifies with",
                false => "is a public key, but the profile signs with a shared secret",
            });
        }
        let bytes = encoding.decode(secret)?;
        match alg {
            Algorithm::EcdsaP256Sha256 | Algorithm::RsaSha256 => {
                let pem_label = match encoding {
                    SecretEncoding::Pem => Some(super::asymmetric::pem_der(secret)?.0),
                    _ => None,
                };
                return super::asymmetric::PublicKey::from_der(alg, pem_label, &bytes).map(Key::Public);
            }
            Algorithm::JwtHs256 => return Ok(Key::Jwt(bytes)),
            Algorithm::Ed25519 => {}
            _ => return Ok(Key::Mac(MacKey::new(alg, &bytes))),
        }
        if encoding != SecretEncoding::Ed25519 || secret.starts_with("whpk_") {
            let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| "is not a 32-byte public key")?;
            let public = ed25519_dalek::VerifyingKey::from_bytes(&raw)
                .map_err(|_| "is not a valid Ed25519 public key")?;
            return Ok(Key::Ed25519 { public, secret: None });
        }
        let seed: [u8; 32] = bytes
            .get(..32)
            .filter(|_| bytes.len() == 32 || bytes.len() == 64)
            .and_then(|b| b.try_into().ok())
            .ok_or("is not a 32-byte seed or a 64-byte keypair")?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        Ok(Key::Ed25519 { public: signing.verifying_key(), secret: Some(signing) })
    }

    /// True when any candidate is a valid signature of the concatenated `parts`.
    pub fn matches<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>, candidates: &[&[u8]]) -> bool {
        match self {
            Key::Mac(k) => {
                let d = k.digest(parts);
                candidates.iter().any(|c| d.ct_eq(c))
            }
            Key::Ed25519 { public, .. } => {
                let msg: Vec<u8> = parts.into_iter().flatten().copied().collect();
                candidates.iter().any(|c| {
                    <[u8; 64]>::try_from(*c)
                        .map(|b| {
                            public.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&b)).is_ok()
                        })
                        .unwrap_or(false)
                })
            }
            Key::Public(k) => k.matches(parts, candidates),
            // A JWT carries its own signed input; it is checked by `jwt::verify`.
            Key::Jwt(_) => false,
        }
    }

    /// The signature bytes over `parts`; `None` for a public key, which cannot sign.
    pub fn sign<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
        match self {
            Key::Mac(k) => Some(k.digest(parts).as_bytes().to_vec()),
            Key::Ed25519 { secret, .. } => {
                use ed25519_dalek::Signer;
                let msg: Vec<u8> = parts.into_iter().flatten().copied().collect();
                secret.as_ref().map(|s| s.sign(&msg).to_bytes().to_vec())
            }
            Key::Public(_) | Key::Jwt(_) => None,
        }
    }
}

/// A computed digest, kept on the stack.
pub struct Digest {
    bytes: [u8; MAX_DIGEST],
    len: usize,
}

impl Digest {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Constant-time equality with a decoded candidate.
    pub fn ct_eq(&self, candidate: &[u8]) -> bool {
        candidate.len() == self.len && bool::from(self.as_bytes().ct_eq(candidate))
    }
}

impl MacKey {
    pub fn new(alg: Algorithm, key: &[u8]) -> Self {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        match alg {
            Algorithm::HmacSha1 => MacKey::Sha1(Hmac::new_from_slice(key).expect("hmac key")),
            // Shared-value schemes never MAC; their key is unused.
            Algorithm::HmacSha256 | Algorithm::JwtHs256 | Algorithm::Token | Algorithm::Basic => {
                MacKey::Sha256(Hmac::new_from_slice(key).expect("hmac key"))
            }
            _ => MacKey::Sha512(Hmac::new_from_slice(key).expect("hmac key")),
        }
    }

    /// MAC over the concatenation of `parts`, without joining them.
    pub fn digest<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>) -> Digest {
        fn run<M: Mac + Clone>(m: &M, parts: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Digest {
            let mut m = m.clone();
            for p in parts {
                m.update(p.as_ref());
            }
            let out = m.finalize().into_bytes();
            let mut bytes = [0u8; MAX_DIGEST];
            bytes[..out.len()].copy_from_slice(&out);
            Digest { bytes, len: out.len() }
        }
        match self {
            MacKey::Sha1(m) => run(m, parts),
            MacKey::Sha256(m) => run(m, parts),
            MacKey::Sha512(m) => run(m, parts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_either_case_and_rejects_odd_or_long() {
        let mut out = [0u8; MAX_DIGEST + 8];
        assert_eq!(Encoding::Hex.decode(b"abCD", &mut out), Some(2));
        assert_eq!(&out[..2], &[0xab, 0xcd]);
        assert_eq!(Encoding::Hex.decode(b"abc", &mut out), None);
        assert_eq!(Encoding::Hex.decode(b"zz", &mut out), None);
        assert_eq!(Encoding::Hex.decode(b"", &mut out), None);
        // Longer than the buffer; whether a length suits the algorithm is the caller's check.
        assert_eq!(Encoding::Hex.decode(&[b'a'; 2 * (MAX_DIGEST + 8) + 2], &mut out), None);
    }

    #[test]
    fn base64_accepts_missing_padding_and_rejects_garbage() {
        let mut out = [0u8; MAX_DIGEST + 8];
        assert_eq!(Encoding::Base64.decode(b"AAEC", &mut out), Some(3));
        assert_eq!(Encoding::Base64.decode(b"AAE=", &mut out), Some(2));
        assert_eq!(Encoding::Base64.decode(b"AAE", &mut out), Some(2));
        assert_eq!(Encoding::Base64.decode(b"!!!not-base64!!!", &mut out), None);
        assert_eq!(Encoding::Base64.decode(&[b'A'; 200], &mut out), None);
    }

    #[test]
    fn base64url_uses_the_url_safe_alphabet_with_or_without_padding() {
        let mut out = [0u8; MAX_DIGEST + 8];
        // 0xfb 0xff encodes as "+/8=" in standard base64 and "-_8" in base64url.
        assert_eq!(Encoding::Base64url.encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(Encoding::Base64url.decode(b"-_8", &mut out), Some(2));
        assert_eq!(&out[..2], &[0xfb, 0xff]);
        assert_eq!(Encoding::Base64url.decode(b"-_8=", &mut out), Some(2));
        assert_eq!(Encoding::Base64url.decode(b"+/8=", &mut out), None);
        assert_eq!(Encoding::Base64.decode(b"-_8=", &mut out), None);
        assert_eq!(Encoding::Base64url.decode(b"", &mut out), None);
        assert_eq!(Encoding::Base64url.decode(&[b'A'; 200], &mut out), None);
    }

    #[test]
    fn github_documented_example() {
        // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
        let key = MacKey::new(Algorithm::HmacSha256, b"It's a Secret to Everybody");
        let d = key.digest([b"Hello, World!".as_slice()]);
        assert_eq!(
            hex::encode(d.as_bytes()),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn split_parts_equal_joined_input() {
        let key = MacKey::new(Algorithm::HmacSha512, b"k");
        let a = key.digest([b"12".as_slice(), b".", b"body"]);
        let b = key.digest([b"12.body".as_slice()]);
        assert!(a.ct_eq(b.as_bytes()));
        assert!(!a.ct_eq(&b.as_bytes()[..63]));
    }

    #[test]
    fn whsec_secret_decoding() {
        assert_eq!(SecretEncoding::WhsecBase64.decode("whsec_AAEC").unwrap(), vec![0, 1, 2]);
        assert!(SecretEncoding::WhsecBase64.decode("whsec_!!").is_err());
        assert!(SecretEncoding::Raw.decode("").is_err());
    }
}
