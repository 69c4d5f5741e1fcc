//! Keys (HMAC, and Ed25519 for Standard Webhooks' `v1a`), digests, and the decoding of
//! signature values, compared in constant time.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// Largest digest we produce (SHA-512).
pub const MAX_DIGEST: usize = 64;

/// Standard base64 that accepts values with or without `=` padding.
const B64_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
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
    /// No signature: a header's whole value is a shared token (see [`super::token`]).
    Token,
    /// No signature: `Authorization: Basic` credentials, the secret being `user:password`.
    Basic,
}

impl Algorithm {
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::HmacSha1 => 20,
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha512 => 64,
            Algorithm::Ed25519 => 64,
            Algorithm::Token | Algorithm::Basic => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha512 => "hmac-sha512",
            Algorithm::Ed25519 => "ed25519",
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
    /// The value as sent, not decoded: shared-token schemes, which sign nothing.
    Plain,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
            Encoding::Plain => "plain",
        }
    }

    /// Writes `digest` the way the provider would.
    pub fn encode(self, digest: &[u8]) -> String {
        match self {
            Encoding::Hex | Encoding::Plain => hex::encode(digest),
            Encoding::Base64 => B64_ANY_PAD.encode(digest),
        }
    }

    /// Decodes a received signature value into `out`, returning the decoded length.
    /// Anything that is not cleanly decodable, or too long to be a digest, is `None`.
    pub fn decode(self, value: &[u8], out: &mut [u8; MAX_DIGEST + 8]) -> Option<usize> {
        match self {
            Encoding::Hex => {
                if value.is_empty() || !value.len().is_multiple_of(2) || value.len() > 2 * MAX_DIGEST {
                    return None;
                }
                let n = value.len() / 2;
                hex::decode_to_slice(value, &mut out[..n]).ok()?;
                Some(n)
            }
            Encoding::Base64 => {
                // 88 base64 characters decode to at most 66 bytes, which fits `out`.
                if value.is_empty() || value.len() > 88 {
                    return None;
                }
                B64_ANY_PAD.decode_slice(value, &mut out[..]).ok()
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
}

impl SecretEncoding {
    pub fn name(self) -> &'static str {
        match self {
            SecretEncoding::Raw => "raw",
            SecretEncoding::WhsecBase64 => "whsec-base64",
            SecretEncoding::Hex => "hex",
            SecretEncoding::Ed25519 => "ed25519",
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
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Builds a key from a configured secret string. Errors never contain the secret.
    pub fn from_secret(alg: Algorithm, encoding: SecretEncoding, secret: &str) -> Result<Key, &'static str> {
        let bytes = encoding.decode(secret)?;
        if alg != Algorithm::Ed25519 {
            if encoding == SecretEncoding::Ed25519 {
                return Err("is an Ed25519 key, but the profile signs with HMAC");
            }
            return Ok(Key::Mac(MacKey::new(alg, &bytes)));
        }
        if encoding != SecretEncoding::Ed25519 {
            return Err("must be an Ed25519 key (whpk_… or whsk_…)");
        }
        if secret.starts_with("whpk_") {
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
            Algorithm::HmacSha256 | Algorithm::Token | Algorithm::Basic => {
                MacKey::Sha256(Hmac::new_from_slice(key).expect("hmac key"))
            }
            Algorithm::HmacSha512 | Algorithm::Ed25519 => {
                MacKey::Sha512(Hmac::new_from_slice(key).expect("hmac key"))
            }
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
        assert_eq!(Encoding::Hex.decode(&[b'a'; 130], &mut out), None);
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
