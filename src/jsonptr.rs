//! JSON pointers (RFC 6901) looked up in a raw body without building the document, refusing
//! bodies that name a key on the path twice.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

/// A parsed pointer such as `/event/id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    source: String,
    tokens: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    #[error("the body is not valid JSON")]
    Invalid,
    #[error("the body names the key '{0}' twice")]
    DuplicateKey(String),
}

impl Pointer {
    /// Parses a pointer; it must be empty or start with `/`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a JSON pointer to the whole document cannot be an id".into());
        }
        let rest = s
            .strip_prefix('/')
            .ok_or_else(|| format!("JSON pointer '{s}' must start with '/'"))?;
        let tokens = rest
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        Ok(Pointer {
            source: s.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The scalar at this pointer: a string (unescaped) or a number/bool as written.
    /// `Ok(None)` when the body has no such path or the value there is an object, array or null.
    pub fn lookup<'b>(&self, body: &'b [u8]) -> Result<Option<Cow<'b, str>>, LookupError> {
        let dup = Cell::new(None);
        let mut de = serde_json::Deserializer::from_slice(body);
        let seed = Walk {
            tokens: &self.tokens,
            dup: &dup,
        };
        let found = match seed.deserialize(&mut de).and_then(|v| de.end().map(|_| v)) {
            Ok(v) => v,
            Err(_) => {
                return Err(match dup.take() {
                    Some(k) => LookupError::DuplicateKey(k),
                    None => LookupError::Invalid,
                })
            }
        };
        Ok(found)
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

struct Walk<'t> {
    tokens: &'t [String],
    dup: &'t Cell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(self.tokens.is_empty().then_some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.tokens.is_empty().then(|| Cow::Owned(v.to_string())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.tokens.is_empty().then(|| Cow::Owned(v.to_string())))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.tokens.is_empty().then(|| Cow::Owned(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(self.tokens.is_empty().then(|| Cow::Owned(v.to_string())))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.tokens.is_empty().then(|| Cow::Owned(v.to_string())))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some((want, rest)) = self.tokens.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(None);
        };
        let mut found = None;
        let mut seen = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == want.as_str() {
                if seen {
                    self.dup.set(Some(want.clone()));
                    return Err(de::Error::custom("duplicate key"));
                }
                seen = true;
                found = map.next_value_seed(Walk {
                    tokens: rest,
                    dup: self.dup,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let index = self.tokens.first().and_then(|t| {
            t.parse::<usize>()
                .ok()
                .filter(|_| t == "0" || !t.starts_with('0'))
        });
        let mut found = None;
        let mut i = 0usize;
        loop {
            if Some(i) == index {
                match seq.next_element_seed(Walk {
                    tokens: &self.tokens[1..],
                    dup: self.dup,
                })? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(p: &str, body: &str) -> Result<Option<String>, LookupError> {
        Pointer::parse(p)
            .unwrap()
            .lookup(body.as_bytes())
            .map(|o| o.map(Cow::into_owned))
    }

    #[test]
    fn finds_nested_scalars() {
        let body = r#"{"a":1,"event":{"id":"evt_1","n":[10,{"x":"y"}]},"z":null}"#;
        assert_eq!(get("/event/id", body).unwrap().as_deref(), Some("evt_1"));
        assert_eq!(get("/a", body).unwrap().as_deref(), Some("1"));
        assert_eq!(get("/event/n/1/x", body).unwrap().as_deref(), Some("y"));
        assert_eq!(get("/event/n/0", body).unwrap().as_deref(), Some("10"));
        assert_eq!(get("/event", body).unwrap(), None);
        assert_eq!(get("/z", body).unwrap(), None);
        assert_eq!(get("/missing", body).unwrap(), None);
        assert_eq!(get("/event/n/01", body).unwrap(), None);
    }

    #[test]
    fn unescapes_strings_and_pointer_tokens() {
        assert_eq!(
            get("/a~1b", r#"{"a/b":"q\"uote"}"#).unwrap().as_deref(),
            Some("q\"uote")
        );
        assert_eq!(get("/t~0", r#"{"t~":"v"}"#).unwrap().as_deref(), Some("v"));
    }

    #[test]
    fn refuses_duplicates_on_the_path_and_invalid_json() {
        assert_eq!(
            get("/id", r#"{"id":"a","id":"b"}"#),
            Err(LookupError::DuplicateKey("id".into()))
        );
        assert_eq!(
            get("/e/id", r#"{"e":{"id":"a","x":1,"id":"b"}}"#),
            Err(LookupError::DuplicateKey("id".into()))
        );
        // Duplicates off the path do not change which event this is.
        assert_eq!(
            get("/id", r#"{"id":"a","x":1,"x":2}"#).unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(
            get("/id", r#"{"id":"a"} trailing"#),
            Err(LookupError::Invalid)
        );
        assert_eq!(get("/id", "\u{0}"), Err(LookupError::Invalid));
        assert!(Pointer::parse("id").is_err());
    }
}
