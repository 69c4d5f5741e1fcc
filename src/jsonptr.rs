//! JSON pointers (RFC 6901) looked up in a raw body without building the document, refusing
//! bodies that name a key on the path twice.

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;
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
    /// Parses a pointer; it must start with `/`. A token `*` matches every element of an
    /// array (or every value of an object), for batched bodies.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a JSON pointer to the whole document cannot be an id".into());
        }
        let rest = s.strip_prefix('/').ok_or_else(|| format!("JSON pointer '{s}' must start with '/'"))?;
        let tokens = rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
        Ok(Pointer { source: s.to_string(), tokens })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pointer can match several values.
    pub fn is_wildcard(&self) -> bool {
        self.tokens.iter().any(|t| t == "*")
    }

    /// The scalar at this pointer: a string (unescaped) or a number/bool as written.
    /// `Ok(None)` when the body has no such path or the value there is an object, array or
    /// null. With a wildcard, the first match.
    pub fn lookup<'b>(&self, body: &'b [u8]) -> Result<Option<Cow<'b, str>>, LookupError> {
        let mut found = None;
        self.walk(body, &mut |v| {
            if found.is_none() {
                found = scalar(v.get());
            }
        })?;
        Ok(found)
    }

    /// Every scalar the pointer matches, in document order.
    pub fn lookup_all<'b>(&self, body: &'b [u8]) -> Result<Vec<Cow<'b, str>>, LookupError> {
        let mut all = Vec::new();
        self.walk(body, &mut |v| all.extend(scalar(v.get())))?;
        Ok(all)
    }

    /// The elements of the array at this pointer, each as its raw text (a slice of `body`).
    /// `Ok(None)` when the path is missing or is not an array.
    pub fn lookup_elements<'b>(&self, body: &'b [u8]) -> Result<Option<Vec<&'b RawValue>>, LookupError> {
        let mut found = None;
        self.walk(body, &mut |v| {
            if found.is_none() && v.get().starts_with('[') {
                found = serde_json::from_str::<Vec<&'b RawValue>>(v.get()).ok();
            }
        })?;
        Ok(found)
    }

    fn walk<'b>(&self, body: &'b [u8], sink: &mut dyn FnMut(&'b RawValue)) -> Result<(), LookupError> {
        let dup = Cell::new(None);
        let mut de = serde_json::Deserializer::from_slice(body);
        let seed = Walk { tokens: &self.tokens, dup: &dup, sink };
        match seed.deserialize(&mut de).and_then(|_| de.end()) {
            Ok(()) => Ok(()),
            Err(_) => Err(match dup.take() {
                Some(k) => LookupError::DuplicateKey(k),
                None => LookupError::Invalid,
            }),
        }
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

struct Walk<'t, 's, 'de> {
    tokens: &'t [String],
    dup: &'t Cell<Option<String>>,
    sink: &'s mut dyn FnMut(&'de RawValue),
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if !self.tokens.is_empty() {
            return d.deserialize_any(self);
        }
        // The value the pointer names, as its raw text: so that a number is its digits as
        // written (through f64, 18446744073709551616 and …617 would be the same id).
        (self.sink)(<&'de RawValue>::deserialize(d)?);
        Ok(())
    }
}

/// A raw JSON value as an id: a string unescaped, a number or boolean as written; `None` for
/// null, objects and arrays (and a string whose escapes do not decode).
fn scalar(raw: &str) -> Option<Cow<'_, str>> {
    match raw.as_bytes().first() {
        Some(b'"') => {
            let inner = &raw[1..raw.len() - 1];
            if inner.contains('\\') {
                serde_json::from_str(raw).ok().map(Cow::Owned)
            } else {
                Some(Cow::Borrowed(inner))
            }
        }
        Some(b'{' | b'[' | b'n') | None => None,
        Some(_) => Some(Cow::Borrowed(raw)),
    }
}

impl<'de> Walk<'_, '_, 'de> {
    fn child<'x>(&'x mut self, tokens: &'x [String]) -> Walk<'x, 'x, 'de> {
        Walk { tokens, dup: self.dup, sink: &mut *self.sink }
    }
}

/// Reached only with tokens left to follow: a scalar on the way has no such path.
impl<'de> Visitor<'de> for Walk<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let Some((want, rest)) = self.tokens.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let any = want == "*";
        let mut seen = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if any {
                map.next_value_seed(self.child(rest))?;
            } else if key == want.as_str() {
                if seen {
                    self.dup.set(Some(want.clone()));
                    return Err(de::Error::custom("duplicate key"));
                }
                seen = true;
                map.next_value_seed(self.child(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let Some((want, rest)) = self.tokens.split_first() else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let any = want == "*";
        let index = want.parse::<usize>().ok().filter(|_| want == "0" || !want.starts_with('0'));
        let mut i = 0usize;
        loop {
            let more = if any || Some(i) == index {
                seq.next_element_seed(self.child(rest))?.is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                break;
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(p: &str, body: &str) -> Result<Option<String>, LookupError> {
        Pointer::parse(p).unwrap().lookup(body.as_bytes()).map(|o| o.map(Cow::into_owned))
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
    fn wildcards_collect_batched_ids() {
        let p = Pointer::parse("/events/*/id").unwrap();
        assert!(p.is_wildcard());
        let body = br#"{"events":[{"id":"EV1","x":[1]},{"id":"EV2"},{"other":1}]}"#;
        let all: Vec<String> = p.lookup_all(body).unwrap().into_iter().map(Cow::into_owned).collect();
        assert_eq!(all, ["EV1", "EV2"]);
        let top = Pointer::parse("/*/eventId").unwrap();
        let all = top.lookup_all(br#"[{"eventId":1},{"eventId":2}]"#).unwrap();
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn unescapes_strings_and_pointer_tokens() {
        assert_eq!(get("/a~1b", r#"{"a/b":"q\"uote"}"#).unwrap().as_deref(), Some("q\"uote"));
        assert_eq!(get("/t~0", r#"{"t~":"v"}"#).unwrap().as_deref(), Some("v"));
    }

    #[test]
    fn refuses_duplicates_on_the_path_and_invalid_json() {
        assert_eq!(get("/id", r#"{"id":"a","id":"b"}"#), Err(LookupError::DuplicateKey("id".into())));
        assert_eq!(
            get("/e/id", r#"{"e":{"id":"a","x":1,"id":"b"}}"#),
            Err(LookupError::DuplicateKey("id".into()))
        );
        // Duplicates off the path do not change which event this is.
        assert_eq!(get("/id", r#"{"id":"a","x":1,"x":2}"#).unwrap().as_deref(), Some("a"));
        assert_eq!(get("/id", r#"{"id":"a"} trailing"#), Err(LookupError::Invalid));
        assert_eq!(get("/id", "\u{0}"), Err(LookupError::Invalid));
        assert_eq!(get("/id", r#"{"id":"a""#), Err(LookupError::Invalid));
        assert!(Pointer::parse("id").is_err());
    }

    #[test]
    fn numeric_ids_keep_their_exact_text() {
        // Through f64 these two were the same id, and the second event was lost as a duplicate.
        let a = get("/id", r#"{"id":18446744073709551616}"#).unwrap();
        let b = get("/id", r#"{"id":18446744073709551617}"#).unwrap();
        assert_eq!(a.as_deref(), Some("18446744073709551616"));
        assert_eq!(b.as_deref(), Some("18446744073709551617"));
        assert_eq!(get("/id", r#"{"id": -12.50e3 }"#).unwrap().as_deref(), Some("-12.50e3"));
        assert_eq!(get("/id", r#"{"id":9007199254740993}"#).unwrap().as_deref(), Some("9007199254740993"));
        assert_eq!(get("/id", r#"{"id":true}"#).unwrap().as_deref(), Some("true"));
        let all = Pointer::parse("/*/n").unwrap().lookup_all(br#"[{"n":100000000000000000001},{"n":1e400}]"#);
        let all: Vec<String> = all.unwrap().into_iter().map(Cow::into_owned).collect();
        assert_eq!(all, ["100000000000000000001", "1e400"]);
    }
}
