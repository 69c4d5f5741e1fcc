//! Public keys that verify signatures made with a provider's private key: ECDSA P-256 over
//! SHA-256 (DER signatures, SendGrid) and RSA PKCS#1 v1.5 over SHA-256 (Wise). Ed25519 keys
//! are [`super::mac::Key::Ed25519`]. A route holds the public key exactly as the provider
//! publishes it: base64 of the DER SubjectPublicKeyInfo, or PEM.

use super::mac::Algorithm;
use base64::Engine;
use sha2::{Digest as _, Sha256};

/// What a PEM block says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemLabel {
    /// `PUBLIC KEY`: a DER SubjectPublicKeyInfo.
    Spki,
    /// `RSA PUBLIC KEY`: a DER PKCS#1 RSAPublicKey.
    RsaPkcs1,
}

/// A public key that verifies only.
#[derive(Clone)]
pub enum PublicKey {
    EcdsaP256(p256::ecdsa::VerifyingKey),
    RsaSha256(rsa::RsaPublicKey),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PublicKey::EcdsaP256(_) => "PublicKey(ecdsa-p256)",
            PublicKey::RsaSha256(_) => "PublicKey(rsa)",
        })
    }
}

/// Smallest RSA modulus accepted, in bits: shorter keys are factorable.
const MIN_RSA_BITS: usize = 2048;

/// The DER inside a PEM public key, and its label. Line breaks may be real or written as
/// `\n` (a key pasted into one line of YAML or an environment variable). Errors never
/// contain the key.
pub fn pem_der(text: &str) -> Result<(PemLabel, Vec<u8>), &'static str> {
    let text = text.trim();
    let (label, rest) = if let Some(r) = text.strip_prefix("-----BEGIN PUBLIC KEY-----") {
        (PemLabel::Spki, r)
    } else if let Some(r) = text.strip_prefix("-----BEGIN RSA PUBLIC KEY-----") {
        (PemLabel::RsaPkcs1, r)
    } else {
        return Err("is not a PEM public key (-----BEGIN PUBLIC KEY----- or -----BEGIN RSA PUBLIC KEY-----)");
    };
    let end = match label {
        PemLabel::Spki => "-----END PUBLIC KEY-----",
        PemLabel::RsaPkcs1 => "-----END RSA PUBLIC KEY-----",
    };
    let body = rest.strip_suffix(end).ok_or("has no matching PEM END line")?;
    let b64: String = body.replace("\\n", "\n").chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "is not valid base64 inside its PEM armour")?;
    if der.is_empty() {
        return Err("is empty");
    }
    Ok((label, der))
}

impl PublicKey {
    /// Parses a DER public key for `alg`; `pem` is the PEM label when the key came as PEM
    /// (without one, the DER is a SubjectPublicKeyInfo).
    pub fn from_der(alg: Algorithm, pem: Option<PemLabel>, der: &[u8]) -> Result<Self, &'static str> {
        use p256::pkcs8::DecodePublicKey as _;
        match (alg, pem.unwrap_or(PemLabel::Spki)) {
            (Algorithm::EcdsaP256Sha256, PemLabel::Spki) => {
                p256::ecdsa::VerifyingKey::from_public_key_der(der)
                    .map(PublicKey::EcdsaP256)
                    .map_err(|_| "is not a P-256 public key (DER SubjectPublicKeyInfo)")
            }
            (Algorithm::RsaSha256, label) => {
                let key = match label {
                    PemLabel::Spki => rsa::RsaPublicKey::from_public_key_der(der),
                    PemLabel::RsaPkcs1 => {
                        use rsa::pkcs1::DecodeRsaPublicKey as _;
                        rsa::RsaPublicKey::from_pkcs1_der(der).map_err(Into::into)
                    }
                }
                .map_err(|_| "is not an RSA public key")?;
                use rsa::traits::PublicKeyParts as _;
                if key.n().bits() < MIN_RSA_BITS {
                    return Err("is an RSA key shorter than 2048 bits");
                }
                Ok(PublicKey::RsaSha256(key))
            }
            _ => Err("is not a public key of the kind the profile verifies with"),
        }
    }

    /// True when any candidate is a valid signature of the concatenated `parts`. The parts
    /// are hashed as they come, never joined.
    pub fn matches<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>, candidates: &[&[u8]]) -> bool {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        match self {
            PublicKey::EcdsaP256(k) => {
                use p256::ecdsa::signature::DigestVerifier as _;
                candidates.iter().any(|c| {
                    p256::ecdsa::Signature::from_der(c)
                        .is_ok_and(|sig| k.verify_digest(h.clone(), &sig).is_ok())
                })
            }
            PublicKey::RsaSha256(k) => {
                let hashed = h.finalize();
                candidates.iter().any(|c| k.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &hashed, c).is_ok())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The P-256 public key of private value 1234, as SendGrid shows keys (base64 DER SPKI),
    // written by Python's `cryptography`.
    const EC_SPKI: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+aAlWsEGHwnmaSkk7YvJz9ZswGimqegmxMq/oaTXB/zZcBcYxyRAzcmv6NvmcJnBkmfatFxTBvX7gBREbQAubg==";

    fn ec_key() -> PublicKey {
        let der = base64::engine::general_purpose::STANDARD.decode(EC_SPKI).unwrap();
        PublicKey::from_der(Algorithm::EcdsaP256Sha256, None, &der).unwrap()
    }

    #[test]
    fn ecdsa_signatures_verify_over_the_parts_and_nothing_else() {
        use p256::ecdsa::signature::Signer as _;
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pk = PublicKey::EcdsaP256(*sk.verifying_key());
        let sig: p256::ecdsa::Signature = sk.sign(b"1600000000{}");
        let der = sig.to_der();
        assert!(pk.matches([b"1600000000".as_slice(), b"{}"], &[der.as_bytes()]));
        assert!(!pk.matches([b"1600000001".as_slice(), b"{}"], &[der.as_bytes()]));
        // Truncated and fixed-size (r||s) forms are refused: the scheme sends DER.
        assert!(!pk.matches([b"1600000000{}".as_slice()], &[&der.as_bytes()[..der.len() - 1]]));
        assert!(!pk.matches([b"1600000000{}".as_slice()], &[sig.to_bytes().as_slice()]));
        assert!(!ec_key().matches([b"1600000000{}".as_slice()], &[der.as_bytes()]));
    }

    #[test]
    fn keys_of_the_wrong_kind_or_armour_are_refused() {
        let der = base64::engine::general_purpose::STANDARD.decode(EC_SPKI).unwrap();
        assert!(PublicKey::from_der(Algorithm::RsaSha256, None, &der).is_err());
        assert!(PublicKey::from_der(Algorithm::EcdsaP256Sha256, Some(PemLabel::RsaPkcs1), &der).is_err());
        assert!(PublicKey::from_der(Algorithm::EcdsaP256Sha256, None, &der[..40]).is_err());
        assert!(pem_der("MFkw").is_err());
        assert!(pem_der("-----BEGIN PUBLIC KEY-----\nMFkw").is_err());
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\\n{}\\n{}\\n-----END PUBLIC KEY-----",
            &EC_SPKI[..64],
            &EC_SPKI[64..]
        );
        let (label, got) = pem_der(&pem).unwrap();
        assert_eq!((label, got), (PemLabel::Spki, der));
    }

    /// A 1024-bit RSA public key (base64 DER SPKI), written by Python's `cryptography`.
    const RSA_1024_SPKI: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDd5zjXdIz3AY77Ix2vn7+OJ/rOTNJMBIFCTKoP2OhZs9ePZPS9WcF/wAEeQHihUhia3IKX7rl03szhn0mdBlDRaLvKFuomw7h4LsocEypfGwgGrOiuQqZKLSatLfgDTXURKreM1ft3LpcFVByIrILLuSNlSr9nYQJ2gHAFYLiBcwIDAQAB";

    /// The 2048-bit test key of `tests/vectors/gen_asym.py` (never used elsewhere).
    const RSA_TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDR8tR1TaMX4lG2\n4J3cy4Klm5I37S5NkyExkFS2hI6mzxHcUUivQylD8KnqF44EOzbN7YOfz5AaoJFt\n0E3ZF9JZ26311IuFhWiKS4cjHAaWQVYFDtQuzbQJzUuRboVbJ65C4tps6PHxlolN\nD6sdDbv0GqjUND3rke1cVPGdFKZHuI6ZWr7LcICK/2k/Ww3N79PsVnqTJjV1iicV\ne0Kacr9IglIPBrSME2D1D6VrWE/JrHO6zax+RoaM0Vb5wmQilXmNHSiolrscEwve\n0r8uXvyezpC3826ItNkkerCo79rfnv4pnEds5cYr82OKGnxpA0o/9uL0P9eJAa9u\nHOGbOtsvAgMBAAECggEAZNxoZgxMwHIpOJazMDoSwzW4aqbG2lzHExUYJXEMSSXs\nmi/wn8Y/olSRhJUZVH4QB6FF3TYtsCUYiK2MYLGZjDLF4XZhKt2bCelb/CmAHpo3\n1Yk4tV18U0MtvSnf5hlrldV/AthsN1hPENboqTYKaCyQlBWe87dw1S03v/OGKKip\nKsC68MxZSMQAYMOzay9uiws3qoIWzH15cRJ829CaQLzbQQFSmOVPNqyVqyTFfmA8\n1LcmaHKkOVJs8aC0NLiG+PmNXCk7BjgMG+Z6b5/qGoomPVowUk9mLAN/qvzqrTzN\nugJYUbGmnU70k0m8Y3oHVP2yl7qSPnPAkQU7WfwbhQKBgQD9ydt0aW/Q08ig1dFZ\n/xCTCtcmVTrD+WnWhtcHflzy1X7VoJdLuJN0e4MbsYol2KTv8VZL6I5R4+iGSnEU\nEe9Olp6M/wnQePLhtpXAIr5BuFda0GvVGDSiZXJDDE7bnpYbvWMEghdYJkW1X8lv\nAB51332jnfTPLhYje43TQ7eywwKBgQDTxy0OZ4Vxwr3M/vfvzKdObFcHu0Xk2cff\n36F6p6uK2IDxcxf30N6+COl+IRC06kVHtzRLr/ppLZoRiHdxwaJkurxV9SwEoeOf\nbT7HPdu00ZM6SG5ofa3rE29q9hPBqBEPemIZxSG2g6nV16/f3tSV37HhCNYECp5X\nwre9jf+XJQKBgA8RVAE2XVglqsy5xSM1vJMuWpXBC6sk/L6q5MtiGjykplIipbju\nLXsF9kPHp68VjL1eM8Rv+zsrb9vBQbNyWSXuVV2Dqt6Av9Lc10lABtG6Ex2mMDDH\nriBSK5WFfo0Vfk4JUX6sBpzKMOtS04/OjwBqk3gKYcWHM/NJW6NGavqnAoGBAJr0\n5PniM1ke5iPl9+Kle1G9ohyNIcImu8IKbqxBnRoV+psw3Lu+QA0KllZsuT23IQQt\nf/1VgUOOU2o60TMSPNG5dO7sWs306omPtNyyXV077584uliIhUY5TVAVSDVt1TXf\nFYLHpDhYtF8813pWIHSdXhlLjtUcM+oBFtKC4R5lAoGBAJxhQpc7jRimtDU5l6M2\ntK1yiBP6TY5CP6jZbkO1PPP0ueF1yKnZxgz9l23bSLOMGEkjVim2MwKtFtm9tA3E\n/mAbSjFAUTwMz8NbcN2fe74tY8KblV8Qzrw+pygaWji2uS3Q+fuCqhnQ8gUBd8cb\nZltI949kweJ6H0fXTs7BAVtG\n-----END PRIVATE KEY-----";

    #[test]
    fn rsa_keys_shorter_than_2048_bits_are_refused_and_signatures_verify() {
        use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
        let small = base64::engine::general_purpose::STANDARD.decode(RSA_1024_SPKI).unwrap();
        let e = PublicKey::from_der(Algorithm::RsaSha256, None, &small).unwrap_err();
        assert!(e.contains("2048"), "{e}");

        let sk = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_TEST_KEY).unwrap();
        let der = sk.to_public_key().to_public_key_der().unwrap();
        let pk = PublicKey::from_der(Algorithm::RsaSha256, None, der.as_bytes()).unwrap();
        let sig = sk.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(b"{\"a\":1}")).unwrap();
        assert!(pk.matches([b"{\"a\":".as_slice(), b"1}"], &[&sig]));
        assert!(!pk.matches([b"{\"a\":2}".as_slice()], &[&sig]));
        assert!(!pk.matches([b"{\"a\":1}".as_slice()], &[&sig[1..]]));
    }
}
