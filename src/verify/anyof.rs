//! Signatures sent in several headers at once, any of which may match: a fixed list (Box's
//! `box-signature-primary` and `box-signature-secondary`) or a numbered family
//! (DocuSign's `X-DocuSign-Signature-1` … `-N`, one per configured key).

use super::header::{HeaderError, HeaderFormat, Parsed, MAX_SIGNATURES};
use super::VerifyError;
use http::{HeaderMap, HeaderName};

/// Where a profile's signature headers are looked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HeaderSet {
    /// The first of the profile's header aliases present (the default).
    #[default]
    First,
    /// Every listed header present; a signature in any of them may match.
    AnyOf,
    /// `<prefix>1` to `<prefix>MAX_SIGNATURES`, every one present; a signature in any may match.
    Numbered(String),
}

impl HeaderSet {
    /// Parses a YAML `any_of` list: header names, or one name ending in `*` for a numbered
    /// family. Returns the set and the concrete names (a family's first member).
    pub fn from_list(list: &[String]) -> Result<(HeaderSet, Vec<HeaderName>), String> {
        let name = |s: &str| {
            HeaderName::from_bytes(s.as_bytes())
                .map_err(|_| format!("signature.any_of: '{s}' is not a header name"))
        };
        match list {
            [] => Err("signature.any_of: at least one header is needed".into()),
            [one] if one.ends_with('*') => {
                let prefix = &one[..one.len() - 1];
                if prefix.is_empty() || prefix.contains('*') {
                    return Err("signature.any_of: a numbered family is a header name then '*'".into());
                }
                let first = name(&format!("{prefix}1"))?;
                Ok((HeaderSet::Numbered(prefix.to_ascii_lowercase()), vec![first]))
            }
            many if many.iter().any(|h| h.contains('*')) => {
                Err("signature.any_of: a numbered family ('Name-*') must be the only entry".into())
            }
            many if many.len() > MAX_SIGNATURES => {
                Err(format!("signature.any_of: at most {MAX_SIGNATURES} headers"))
            }
            many => Ok((HeaderSet::AnyOf, many.iter().map(|h| name(h)).collect::<Result<_, _>>()?)),
        }
    }

    /// How the place is shown in tables and logs.
    pub fn describe(&self, names: &[HeaderName]) -> String {
        match self {
            HeaderSet::Numbered(p) => format!("any of {p}1 … {p}{MAX_SIGNATURES}"),
            HeaderSet::AnyOf => {
                format!("any of {}", names.iter().map(HeaderName::as_str).collect::<Vec<_>>().join(", "))
            }
            HeaderSet::First => names.iter().map(HeaderName::as_str).collect::<Vec<_>>().join(" | "),
        }
    }

    /// The signature candidates of every header of the set present in `headers`, each header
    /// value parsed with `format`. A header given twice is ambiguous; no header at all, or
    /// more than [`MAX_SIGNATURES`] signatures (a numbered family past its bound), is refused.
    pub fn collect<'a>(
        &self,
        names: &[HeaderName],
        headers: &'a HeaderMap,
        format: &HeaderFormat,
    ) -> Result<Parsed<'a>, VerifyError> {
        let numbered: Vec<HeaderName>;
        let names: &[HeaderName] = match self {
            HeaderSet::Numbered(prefix) => {
                let past = HeaderName::from_bytes(format!("{prefix}{}", MAX_SIGNATURES + 1).as_bytes())
                    .map_err(|_| VerifyError::MissingSignature(self.describe(names)))?;
                if headers.contains_key(&past) {
                    return Err(HeaderError::TooMany.into());
                }
                numbered = (1..=MAX_SIGNATURES)
                    .filter_map(|i| HeaderName::from_bytes(format!("{prefix}{i}").as_bytes()).ok())
                    .collect();
                &numbered
            }
            _ => names,
        };
        let mut out: Option<Parsed<'a>> = None;
        for name in names {
            let Some(v) = super::single(headers, name)? else { continue };
            let v = v.to_str().map_err(|_| VerifyError::NotAscii)?;
            let parsed = format.parse(v)?;
            match &mut out {
                None => out = Some(parsed),
                Some(all) => all.extend(&parsed)?,
            }
        }
        out.ok_or_else(|| VerifyError::MissingSignature(self.describe(names)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> HeaderFormat {
        HeaderFormat::default()
    }

    fn map(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn any_of_a_fixed_list() {
        let (set, names) =
            HeaderSet::from_list(&["box-signature-primary".into(), "box-signature-secondary".into()])
                .unwrap();
        assert_eq!(set, HeaderSet::AnyOf);
        let h = map(&[("box-signature-secondary", "bb"), ("box-signature-primary", "aa")]);
        assert_eq!(set.collect(&names, &h, &raw()).unwrap().signatures(), &["aa", "bb"]);
        let h = map(&[("box-signature-secondary", "bb")]);
        assert_eq!(set.collect(&names, &h, &raw()).unwrap().signatures(), &["bb"]);
        assert!(matches!(set.collect(&names, &map(&[]), &raw()), Err(VerifyError::MissingSignature(_))));
        let twice = map(&[("box-signature-primary", "aa"), ("box-signature-primary", "cc")]);
        assert!(set.collect(&names, &twice, &raw()).unwrap_err().is_ambiguous());
        let empty = map(&[("box-signature-primary", "")]);
        assert_eq!(set.collect(&names, &empty, &raw()).unwrap_err(), VerifyError::Header(HeaderError::Empty));
    }

    #[test]
    fn a_numbered_family_is_bounded() {
        let (set, names) = HeaderSet::from_list(&["X-DocuSign-Signature-*".into()]).unwrap();
        assert_eq!(set, HeaderSet::Numbered("x-docusign-signature-".into()));
        assert_eq!(names[0].as_str(), "x-docusign-signature-1");
        let h = map(&[("X-DocuSign-Signature-1", "a"), ("X-DocuSign-Signature-3", "c")]);
        assert_eq!(set.collect(&names, &h, &raw()).unwrap().signatures(), &["a", "c"]);
        let past = map(&[("X-DocuSign-Signature-1", "a"), ("X-DocuSign-Signature-9", "i")]);
        assert_eq!(
            set.collect(&names, &past, &raw()).unwrap_err(),
            VerifyError::Header(HeaderError::TooMany)
        );
        assert!(matches!(
            set.collect(&names, &map(&[("X-DocuSign-Signature", "a")]), &raw()),
            Err(VerifyError::MissingSignature(_))
        ));
    }

    #[test]
    fn bad_lists_are_refused() {
        for bad in [
            vec![],
            vec!["A-*".to_string(), "B".into()],
            vec!["*".into()],
            vec!["A*-*".into()],
            vec!["bad name".into()],
        ] {
            assert!(HeaderSet::from_list(&bad).is_err(), "{bad:?}");
        }
        assert!(HeaderSet::from_list(&vec!["A".to_string(); 9]).is_err());
    }

    #[test]
    fn the_loader_takes_any_of_alone() {
        use crate::verify::profile::Profile;
        let yaml = |sig: &str| {
            Profile::from_yaml(
                "x.yaml",
                &format!("name: x\nsignature: {{{sig}, algorithm: hmac-sha256, encoding: hex}}\n"),
            )
        };
        let p = yaml("any_of: [A, B]").unwrap();
        assert_eq!(p.header_set, HeaderSet::AnyOf);
        assert_eq!(p.signature_place(), "any of a, b");
        assert!(yaml("any_of: [A], headers: [B]").unwrap_err().message.contains("only one of"));
        assert!(yaml("any_of: [A], json: /s").unwrap_err().message.contains("only one of"));
        assert!(yaml("any_of: [A-*, B]").is_err());
        let e = yaml("any_of: [A], format: key-value, keys: [v1], timestamp_key: t").unwrap_err();
        assert!(e.message.contains("timestamp inside"), "{e}");
    }
}
