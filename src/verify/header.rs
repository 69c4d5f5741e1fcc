//! Parsing of signature header values: raw (optionally prefixed), key/value lists and
//! versioned lists, without allocating.

use serde::{Deserialize, Serialize};

/// How the signature header is laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The whole value is one signature, after an optional `prefix` such as `sha256=`.
    #[default]
    Raw,
    /// `t=…,v1=…,v1=…` (Stripe) or `ts=…;h1=…` (Paddle): pairs split by `separator`,
    /// key and value split by `kv_separator`.
    KeyValue,
    /// `v1,<sig> v1,<sig>` (Standard Webhooks): entries split by `separator`, version and
    /// signature split by `kv_separator`.
    Versioned,
    /// `<timestamp>,<sig>,<sig>` (Recurly): entries split by `separator`; the one at
    /// `timestamp_position` (if any) is the timestamp, every other entry a signature.
    Positional,
}

/// A validated description of a signature header's value. The default is a raw value with
/// no prefix.
#[derive(Debug, Clone, Default)]
pub struct HeaderFormat {
    pub format: Format,
    pub prefix: Option<String>,
    /// The prefix may be left out (Mollie's SDK strips `sha256=` only when it is there).
    pub prefix_optional: bool,
    /// Key-value only: the value may hold several sets of entries split by this (Persona's
    /// `t=…,v1=… t=…,v1=…`); a timestamp repeated across sets must be the same.
    pub set_separator: Option<String>,
    pub separator: String,
    pub kv_separator: String,
    /// Keys (key-value) or versions (versioned) whose values are signatures; `*` takes every
    /// key but the timestamp's (key-id-tagged values such as Braintree's `public_key|sig`,
    /// where the key id names the sender's key pair, not a version).
    pub signature_keys: Vec<String>,
    /// Key of the timestamp inside the header (key-value only).
    pub timestamp_key: Option<String>,
    /// Place of the timestamp among the entries (positional only, counted from 0).
    pub timestamp_position: Option<usize>,
}

/// Why a signature header value could not be used. Never carries the value itself.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("the signature header is empty")]
    Empty,
    #[error("the signature header lacks the expected prefix \"{0}\"")]
    Prefix(String),
    #[error("the signature header holds a prefix but no signature")]
    PrefixOnly,
    #[error("the signature header holds no signature of an accepted version")]
    NoSignature,
    #[error("the signature header names the timestamp twice")]
    DuplicateTimestamp,
    #[error("the signature header holds more than {MAX_SIGNATURES} signatures")]
    TooMany,
}

/// Signatures beyond this many in one header are refused rather than tried.
pub const MAX_SIGNATURES: usize = 8;

/// What a header value holds: signature candidates (still encoded) and an embedded timestamp.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    sigs: [&'a str; MAX_SIGNATURES],
    count: usize,
    pub timestamp: Option<&'a str>,
}

impl<'a> Parsed<'a> {
    pub fn signatures(&self) -> &[&'a str] {
        &self.sigs[..self.count]
    }

    /// Adds the signatures of another header's value (profiles whose signatures come in
    /// several headers); an embedded timestamp is not taken from it.
    pub fn extend(&mut self, other: &Parsed<'a>) -> Result<(), HeaderError> {
        for s in other.signatures() {
            self.push(s)?;
        }
        Ok(())
    }

    fn push(&mut self, s: &'a str) -> Result<(), HeaderError> {
        if self.count == MAX_SIGNATURES {
            return Err(HeaderError::TooMany);
        }
        self.sigs[self.count] = s;
        self.count += 1;
        Ok(())
    }
}

impl HeaderFormat {
    pub fn parse<'a>(&self, value: &'a str) -> Result<Parsed<'a>, HeaderError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(HeaderError::Empty);
        }
        let mut out = Parsed::default();
        match self.format {
            Format::Raw => {
                let sig = match &self.prefix {
                    Some(p) => {
                        let missing = || HeaderError::Prefix(p.clone());
                        match value.get(..p.len()) {
                            Some(head) if head.eq_ignore_ascii_case(p) => value[p.len()..].trim(),
                            _ if self.prefix_optional => value,
                            _ => return Err(missing()),
                        }
                    }
                    None => value,
                };
                if sig.is_empty() {
                    return Err(HeaderError::PrefixOnly);
                }
                out.push(sig)?;
            }
            Format::KeyValue | Format::Versioned => {
                let sets: &mut dyn Iterator<Item = &str> = match &self.set_separator {
                    Some(sep) => &mut value.split(sep.as_str()).filter(|s| !s.trim().is_empty()),
                    None => &mut std::iter::once(value),
                };
                for set in sets {
                    let mut set_timestamp = None;
                    for item in set.split(self.separator.as_str()) {
                        let item = item.trim();
                        let Some((k, v)) = item.split_once(self.kv_separator.as_str()) else {
                            continue;
                        };
                        let (k, v) = (k.trim(), v.trim());
                        if self.timestamp_key.as_deref() == Some(k) {
                            if set_timestamp.replace(v).is_some() {
                                return Err(HeaderError::DuplicateTimestamp);
                            }
                        } else if !v.is_empty() && self.signature_keys.iter().any(|s| s == k || s == "*") {
                            out.push(v)?;
                        }
                    }
                    // Sets of one value sign one timestamp: one that differs is ambiguous.
                    if let Some(t) = set_timestamp {
                        if out.timestamp.replace(t).is_some_and(|prev| prev != t) {
                            return Err(HeaderError::DuplicateTimestamp);
                        }
                    }
                }
                if out.count == 0 {
                    return Err(HeaderError::NoSignature);
                }
            }
            Format::Positional => {
                for (i, item) in value.split(self.separator.as_str()).enumerate() {
                    let item = item.trim();
                    if self.timestamp_position == Some(i) {
                        out.timestamp = Some(item);
                    } else if !item.is_empty() {
                        out.push(item)?;
                    }
                }
                if out.count == 0 {
                    return Err(HeaderError::NoSignature);
                }
            }
        }
        Ok(out)
    }

    /// Writes a header value holding `sig` (and `timestamp` where the format embeds it),
    /// the way the provider would; used by `portcullis sign`.
    pub fn render(&self, sig: &str, timestamp: Option<&str>) -> String {
        match self.format {
            Format::Raw => format!("{}{sig}", self.prefix.as_deref().unwrap_or("")),
            Format::KeyValue => {
                let key = &self.signature_keys[0];
                match (&self.timestamp_key, timestamp) {
                    (Some(tk), Some(ts)) => format!(
                        "{tk}{kv}{ts}{sep}{key}{kv}{sig}",
                        kv = self.kv_separator,
                        sep = self.separator
                    ),
                    _ => format!("{key}{}{sig}", self.kv_separator),
                }
            }
            Format::Versioned => format!("{}{}{sig}", self.signature_keys[0], self.kv_separator),
            Format::Positional => match (self.timestamp_position, timestamp) {
                // One signature: the timestamp first, or after it.
                (Some(0), Some(ts)) => format!("{ts}{}{sig}", self.separator),
                (Some(_), Some(ts)) => format!("{sig}{}{ts}", self.separator),
                _ => sig.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(prefix: Option<&str>) -> HeaderFormat {
        HeaderFormat { prefix: prefix.map(str::to_string), ..HeaderFormat::default() }
    }

    fn stripe() -> HeaderFormat {
        HeaderFormat {
            format: Format::KeyValue,
            separator: ",".into(),
            kv_separator: "=".into(),
            signature_keys: vec!["v1".into()],
            timestamp_key: Some("t".into()),
            ..HeaderFormat::default()
        }
    }

    #[test]
    fn raw_with_prefix() {
        let f = raw(Some("sha256="));
        assert_eq!(f.parse("sha256=abcd").unwrap().signatures(), &["abcd"]);
        assert_eq!(f.parse("SHA256=abcd").unwrap().signatures(), &["abcd"]);
        assert_eq!(f.parse("sha256=").unwrap_err(), HeaderError::PrefixOnly);
        assert_eq!(f.parse("abcd").unwrap_err(), HeaderError::Prefix("sha256=".into()));
        assert_eq!(f.parse("sha").unwrap_err(), HeaderError::Prefix("sha256=".into()));
        assert_eq!(f.parse("  ").unwrap_err(), HeaderError::Empty);
        // A multi-byte character where the prefix would end is not a panic.
        assert_eq!(f.parse("sha25é=x").unwrap_err(), HeaderError::Prefix("sha256=".into()));
    }

    #[test]
    fn sets_of_entries_each_give_their_signatures() {
        let mut f = stripe();
        f.set_separator = Some(" ".into());
        let p = f.parse("t=1,v1=aa t=1,v1=bb").unwrap();
        assert_eq!(p.signatures(), ["aa", "bb"]);
        assert_eq!(p.timestamp, Some("1"));
        assert!(f.parse("t=1,v1=aa t=2,v1=bb").is_err(), "sets with different timestamps are ambiguous");
        assert!(f.parse("t=1,t=1,v1=aa").is_err(), "a set naming its timestamp twice");
        // Without set_separator the first set's signature runs into the next set's timestamp.
        assert!(!stripe().parse("t=1,v1=aa t=1,v1=bb").unwrap().signatures().contains(&"aa"));
    }

    #[test]
    fn an_optional_prefix_may_be_left_out() {
        let mut f = raw(Some("sha256="));
        f.prefix_optional = true;
        assert_eq!(f.parse("sha256=abcd").unwrap().signatures(), ["abcd"]);
        assert_eq!(f.parse("abcd").unwrap().signatures(), ["abcd"]);
        assert!(f.parse("sha256=").is_err(), "a prefix with nothing after it is still refused");
        assert!(f.parse("").is_err());
    }

    #[test]
    fn a_missing_prefix_names_the_expected_prefix() {
        let e = raw(Some("sha256=")).parse("abcd").unwrap_err().to_string();
        assert!(e.contains("expected prefix \"sha256=\""), "{e}");
    }

    #[test]
    fn stripe_key_value() {
        let p = stripe().parse("t=1492774577,v1=aa,v0=bb,v1=cc").unwrap();
        assert_eq!(p.signatures(), &["aa", "cc"]);
        assert_eq!(p.timestamp, Some("1492774577"));
        assert_eq!(stripe().parse("t=1,v0=bb").unwrap_err(), HeaderError::NoSignature);
        assert_eq!(stripe().parse("t=1,t=2,v1=aa").unwrap_err(), HeaderError::DuplicateTimestamp);
        assert_eq!(stripe().parse(&"v1=a,".repeat(9)).unwrap_err(), HeaderError::TooMany);
    }

    #[test]
    fn versioned_list() {
        let f = HeaderFormat {
            format: Format::Versioned,
            separator: " ".into(),
            kv_separator: ",".into(),
            signature_keys: vec!["v1".into()],
            ..HeaderFormat::default()
        };
        let p = f.parse("v1,abc= v1a,zzz v1,def=").unwrap();
        assert_eq!(p.signatures(), &["abc=", "def="]);
        assert_eq!(f.parse("v1a,zzz").unwrap_err(), HeaderError::NoSignature);
        assert_eq!(f.render("sig", None), "v1,sig");
        assert_eq!(stripe().render("s", Some("5")), "t=5,v1=s");
    }

    #[test]
    fn positional_list() {
        let f = HeaderFormat {
            format: Format::Positional,
            separator: ",".into(),
            timestamp_position: Some(0),
            ..HeaderFormat::default()
        };
        let p = f.parse("1542234000000,aa, bb").unwrap();
        assert_eq!(p.signatures(), &["aa", "bb"]);
        assert_eq!(p.timestamp, Some("1542234000000"));
        assert_eq!(f.parse("1542234000000").unwrap_err(), HeaderError::NoSignature);
        assert_eq!(f.parse("1542234000000,,").unwrap_err(), HeaderError::NoSignature);
        assert_eq!(f.parse(&format!("1{}", ",a".repeat(9))).unwrap_err(), HeaderError::TooMany);
        assert_eq!(f.render("sig", Some("15")), "15,sig");
        let mut merged = f.parse("1,aa").unwrap();
        merged.extend(&f.parse("2,bb").unwrap()).unwrap();
        assert_eq!(merged.signatures(), &["aa", "bb"]);
        assert_eq!(merged.timestamp, Some("1"));
    }

    #[test]
    fn the_loader_keeps_positional_keys_to_the_positional_format() {
        use crate::verify::profile::{Profile, TimestampSource};
        let yaml = |sig: &str| {
            Profile::from_yaml(
                "x.yaml",
                &format!("name: x\nsignature: {{headers: [S], algorithm: hmac-sha256, encoding: hex, payload: '{{timestamp}}.{{body}}', {sig}}}\ntimestamp: {{unit: milliseconds}}\n"),
            )
        };
        let p = yaml("format: positional, timestamp_position: 0").unwrap();
        assert!(matches!(p.timestamp.unwrap().source, TimestampSource::Signature));
        assert_eq!(p.header_format.separator, ",");
        assert!(yaml("format: raw, timestamp_position: 0")
            .unwrap_err()
            .message
            .contains("positional format"));
        assert!(yaml("format: positional, timestamp_position: 0, keys: [v1]").is_err());
        assert!(yaml("format: positional, timestamp_position: 0, prefix: 'x='").is_err());
        assert!(yaml("format: positional, timestamp_position: 8").unwrap_err().message.contains("too far"));
        assert!(yaml("format: positional, timestamp_position: 0, separator: ''").is_err());
    }

    #[test]
    fn key_id_tagged_values_with_a_wildcard_key() {
        let f = HeaderFormat {
            format: Format::KeyValue,
            separator: "&".into(),
            kv_separator: "|".into(),
            signature_keys: vec!["*".into()],
            ..HeaderFormat::default()
        };
        let p = f.parse("pk_old|aa&pk_new|bb&junk").unwrap();
        assert_eq!(p.signatures(), &["aa", "bb"]);
        assert_eq!(f.parse("pk|").unwrap_err(), HeaderError::NoSignature);
        assert_eq!(f.parse("nopipe").unwrap_err(), HeaderError::NoSignature);
    }
}
