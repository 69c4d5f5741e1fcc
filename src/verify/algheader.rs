//! An algorithm named by the sender in a header (Sumsub's `X-Payload-Digest-Alg`), chosen
//! from the names a profile allows: never "any algorithm the sender names".

use super::mac::Algorithm;
use super::VerifyError;
use http::{HeaderMap, HeaderName};
use std::collections::BTreeMap;

/// The header naming the algorithm, and the names a profile accepts in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmHeader {
    pub header: HeaderName,
    /// Accepted names (compared exactly) and the algorithm each stands for.
    pub names: Vec<(String, Algorithm)>,
}

impl AlgorithmHeader {
    /// Validates a YAML `algorithm_header: {name: …, values: {NAME: algorithm}}`.
    pub fn new(header: &str, values: BTreeMap<String, Algorithm>) -> Result<Self, String> {
        let header = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| format!("signature.algorithm_header.name: '{header}' is not a header name"))?;
        if values.is_empty() {
            return Err(
                "signature.algorithm_header.values: list the accepted names and their algorithms".into()
            );
        }
        for (name, alg) in &values {
            if name.trim().is_empty() || name.trim() != name {
                return Err(format!("signature.algorithm_header.values: '{name}' is not a usable name"));
            }
            if *alg == Algorithm::Ed25519 || alg.is_shared_secret() {
                return Err(
                    "signature.algorithm_header.values: only HMAC algorithms can be chosen by a header"
                        .into(),
                );
            }
        }
        Ok(AlgorithmHeader { header, names: values.into_iter().collect() })
    }

    /// The algorithm the request names; a missing header, one given twice, or a name the
    /// profile does not list is refused.
    pub fn pick(&self, headers: &HeaderMap) -> Result<Algorithm, VerifyError> {
        let value = super::single(headers, &self.header)?
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .ok_or(VerifyError::Algorithm)?;
        self.names.iter().find(|(n, _)| n == value).map(|(_, a)| *a).ok_or(VerifyError::Algorithm)
    }

    /// The name a sender uses for `alg` (for `portcullis sign`).
    pub fn name_of(&self, alg: Algorithm) -> Option<&str> {
        self.names.iter().find(|(_, a)| *a == alg).map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sumsub() -> AlgorithmHeader {
        let values = BTreeMap::from([
            ("HMAC_SHA1_HEX".to_string(), Algorithm::HmacSha1),
            ("HMAC_SHA256_HEX".to_string(), Algorithm::HmacSha256),
            ("HMAC_SHA512_HEX".to_string(), Algorithm::HmacSha512),
        ]);
        AlgorithmHeader::new("X-Payload-Digest-Alg", values).unwrap()
    }

    fn with(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in v {
            h.append("x-payload-digest-alg", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn picks_only_listed_names() {
        let a = sumsub();
        assert_eq!(a.pick(&with(&["HMAC_SHA512_HEX"])), Ok(Algorithm::HmacSha512));
        assert_eq!(a.pick(&with(&[" HMAC_SHA1_HEX "])), Ok(Algorithm::HmacSha1));
        assert_eq!(a.pick(&with(&["hmac_sha256_hex"])), Err(VerifyError::Algorithm));
        assert_eq!(a.pick(&with(&["HMAC_MD5_HEX"])), Err(VerifyError::Algorithm));
        assert_eq!(a.pick(&with(&[])), Err(VerifyError::Algorithm));
        assert!(a.pick(&with(&["HMAC_SHA1_HEX", "HMAC_SHA512_HEX"])).unwrap_err().is_ambiguous());
        assert_eq!(a.name_of(Algorithm::HmacSha256), Some("HMAC_SHA256_HEX"));
    }

    #[test]
    fn refuses_unusable_lists() {
        assert!(AlgorithmHeader::new("X-Alg", BTreeMap::new()).is_err());
        assert!(
            AlgorithmHeader::new("X-Alg", BTreeMap::from([("E".to_string(), Algorithm::Ed25519)])).is_err()
        );
        assert!(
            AlgorithmHeader::new("X-Alg", BTreeMap::from([(" A".to_string(), Algorithm::HmacSha1)])).is_err()
        );
        assert!(AlgorithmHeader::new("bad name", BTreeMap::from([("A".to_string(), Algorithm::HmacSha1)]))
            .is_err());
    }

    #[test]
    fn the_loader_needs_the_signing_algorithm_listed() {
        use crate::verify::profile::Profile;
        let yaml = |alg: &str, values: &str| {
            Profile::from_yaml(
                "x.yaml",
                &format!("name: x\nsignature: {{headers: [D], algorithm: {alg}, encoding: hex, algorithm_header: {{name: D-Alg, values: {values}}}}}\n"),
            )
        };
        assert!(yaml("hmac-sha256", "{S1: hmac-sha1, S256: hmac-sha256}")
            .unwrap()
            .algorithm_header
            .is_some());
        assert!(yaml("hmac-sha512", "{S1: hmac-sha1}")
            .unwrap_err()
            .message
            .contains("list signature.algorithm"));
        assert!(yaml("hmac-sha256", "{}").is_err());
        assert!(yaml("hmac-sha256", "{S256: hmac-md5}").is_err());
        let e = Profile::from_yaml(
            "x.yaml",
            "name: x\nsignature: {headers: [D], algorithm: hmac-sha256, encoding: hex, algorithm_header: {name: D-Alg, values: {A: hmac-sha256}, colour: red}}\n",
        )
        .unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
    }
}
