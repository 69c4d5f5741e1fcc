//! Form bodies, for schemes whose signature or signed values are form fields (Mailgun Routes,
//! Mandrill): `application/x-www-form-urlencoded`, or `multipart/form-data` with the boundary
//! of the Content-Type. The parser is bounded (fields, part headers) and refuses what two
//! readers could read differently: a field named twice, a field with an empty name, a part
//! named by `name*=`, a multipart body without its end. File parts are never read as signed
//! fields; schemes that sign every field read only url-encoded bodies ([`Form::parse_urlencoded`]).

use std::borrow::Cow;

use http::HeaderMap;

/// Fields beyond this many are refused rather than read.
pub const MAX_FIELDS: usize = 256;
/// Longest header block of one multipart part.
const MAX_PART_HEADERS: usize = 8 * 1024;

pub const URLENCODED: &str = "application/x-www-form-urlencoded";
pub const MULTIPART: &str = "multipart/form-data";

/// Why a body could not be read as a form. Carries field names, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the body is not a form (Content-Type is neither {URLENCODED} nor {MULTIPART})")]
    NotForm,
    #[error("the multipart form is malformed: {0}")]
    Malformed(&'static str),
    #[error("the form has more than {MAX_FIELDS} fields")]
    TooMany,
    #[error("the form field '{0}' is given more than once")]
    Duplicate(String),
    #[error("the form has a field with an empty name, which no signature can name")]
    EmptyName,
    #[error("a multipart part names its field with name*=, which RFC 7578 forbids and readers differ on")]
    ExtendedName,
    #[error("the form part '{0}' is a file, whose content the signature does not cover")]
    File(String),
    #[error("the body must be {URLENCODED}, the only form the provider sends")]
    NotUrlencoded,
}

/// One field: its name and value, decoded to bytes.
pub type Field<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// A field borrowed from a [`Form`]: name and value bytes.
pub type FieldRef<'f> = (&'f [u8], &'f [u8]);

/// A parsed form: its fields in order, names and values decoded to the bytes the sender
/// encoded (never re-encoded or replaced, so distinct bodies never read as the same fields).
/// A field with an empty name, and a part named by `name*=`, are refused: no signature names
/// them, and readers differ on them. Files of a multipart form (parts with a `filename`) are
/// kept by name with an empty value and marked: they are not signed, so [`Form::get`] refuses
/// one as a signed field and [`Form::sorted`] (every field signed) refuses a form with one.
#[derive(Debug, Default)]
pub struct Form<'a> {
    fields: Vec<Field<'a>>,
    /// Per field: whether it is a file part.
    files: Vec<bool>,
}

impl<'a> Form<'a> {
    /// Reads `body` as the form its Content-Type says.
    pub fn parse(headers: &HeaderMap, body: &'a [u8]) -> Result<Self, FormError> {
        let ct = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .ok_or(FormError::NotForm)?;
        let mut params = ct.split(';');
        let media = params.next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case(URLENCODED) {
            let mut fields = Vec::new();
            for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
                if fields.len() == MAX_FIELDS {
                    return Err(FormError::TooMany);
                }
                let (k, v) = match pair.iter().position(|&b| b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &[][..]),
                };
                if k.is_empty() {
                    return Err(FormError::EmptyName);
                }
                fields.push((percent_decode(k), percent_decode(v)));
            }
            let files = vec![false; fields.len()];
            return Ok(Form { fields, files });
        }
        if !media.eq_ignore_ascii_case(MULTIPART) {
            return Err(FormError::NotForm);
        }
        let boundary = params
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.trim().trim_matches('"'))
            .filter(|b| !b.is_empty() && b.len() <= 70)
            .ok_or(FormError::Malformed("no usable boundary in the Content-Type"))?;
        multipart(body, boundary.as_bytes())
    }

    /// Reads `body` as a url-encoded form, refusing any other Content-Type: for schemes that
    /// sign every field and whose provider sends only url-encoded forms (Mandrill).
    pub fn parse_urlencoded(headers: &HeaderMap, body: &'a [u8]) -> Result<Self, FormError> {
        let urlencoded = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(URLENCODED));
        if !urlencoded {
            return Err(FormError::NotUrlencoded);
        }
        Self::parse(headers, body)
    }

    /// The value of the field `name` as UTF-8 text; `None` when absent, an error when given
    /// twice, not UTF-8, or a file part (whose content is not signed).
    pub fn get(&self, name: &str) -> Result<Option<&str>, FormError> {
        let mut found = self.fields.iter().zip(&self.files).filter(|((k, _), _)| **k == *name.as_bytes());
        let first = found.next();
        if found.next().is_some() {
            return Err(FormError::Duplicate(name.to_string()));
        }
        if first.is_some_and(|(_, &file)| file) {
            return Err(FormError::File(name.to_string()));
        }
        first
            .map(|((_, v), _)| {
                std::str::from_utf8(v).map_err(|_| FormError::Malformed("a signed field that is not UTF-8"))
            })
            .transpose()
    }

    /// Every field as bytes, in body order; a file part is refused (its content is unsigned).
    pub fn fields(&self) -> Result<Vec<FieldRef<'_>>, FormError> {
        if let Some(name) = self.file_part() {
            return Err(FormError::File(name));
        }
        Ok(self.fields.iter().map(|(k, v)| (&**k, &**v)).collect())
    }

    /// The name of the form's first file part, if it has one: content no signature over
    /// named fields covers.
    pub fn file_part(&self) -> Option<String> {
        let ((k, _), _) = self.fields.iter().zip(&self.files).find(|(_, &file)| file)?;
        Some(String::from_utf8_lossy(k).into_owned())
    }

    /// Every field as bytes, sorted by name (bytewise), for schemes that sign every field; a
    /// name given twice is refused, and so is a file part (its content would not be signed).
    pub fn sorted(&self) -> Result<Vec<FieldRef<'_>>, FormError> {
        if let Some(((k, _), _)) = self.fields.iter().zip(&self.files).find(|(_, &file)| file) {
            return Err(FormError::File(String::from_utf8_lossy(k).into_owned()));
        }
        let mut all: Vec<FieldRef<'_>> = self.fields.iter().map(|(k, v)| (&**k, &**v)).collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        if let Some(w) = all.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(FormError::Duplicate(String::from_utf8_lossy(w[0].0).into_owned()));
        }
        Ok(all)
    }
}

/// The event id of a request whose signature covers decoded form fields: the SHA-256 of the
/// signed string itself (domain-separated), so that every encoding of one signed delivery
/// (`%5B` or `%5b` or `[`, `+` or `%20`, a trailing `&`, …) has one id, as a retry does, and
/// a re-encoded replay is a duplicate. Two bodies with one signed string carry one signature:
/// they are one event, whatever bytes they differ in.
pub fn signed_id<'s>(signed: impl IntoIterator<Item = &'s [u8]>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"portcullis signed form\0");
    for part in signed {
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space, `%XX`
/// a byte; a `%` not followed by two hex digits stands for itself (as WHATWG URL parsing does).
fn percent_decode(s: &[u8]) -> Cow<'_, [u8]> {
    if !s.iter().any(|&b| b == b'+' || b == b'%') {
        return Cow::Borrowed(s);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match (s.get(i + 1).and_then(|&b| hex(b)), s.get(i + 2).and_then(|&b| hex(b))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// RFC 7578 multipart/form-data: `--boundary CRLF headers CRLF CRLF content CRLF --boundary`
/// …, ended by `--boundary--`.
fn multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Result<Form<'a>, FormError> {
    let mut delim = b"\r\n--".to_vec();
    delim.extend_from_slice(boundary);
    // The first delimiter may open the body, without the CRLF before it.
    let mut pos = if body.starts_with(&delim[2..]) {
        delim.len() - 2
    } else {
        find(body, &delim, 0).ok_or(FormError::Malformed("no boundary in the body"))? + delim.len()
    };
    let mut fields = Vec::new();
    let mut files = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(Form { fields, files });
        }
        // Transport padding (spaces, tabs) may follow a delimiter, then CRLF.
        let pad = rest.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
        if !rest[pad..].starts_with(b"\r\n") {
            return Err(FormError::Malformed("a boundary not followed by CRLF"));
        }
        let start = pos + pad + 2;
        let head_end = find(body, b"\r\n\r\n", start)
            .filter(|e| e - start <= MAX_PART_HEADERS)
            .ok_or(FormError::Malformed("a part without the end of its headers"))?;
        let head = std::str::from_utf8(&body[start..head_end])
            .map_err(|_| FormError::Malformed("part headers that are not UTF-8"))?;
        let content_start = head_end + 4;
        let content_end = find(body, &delim, content_start)
            .ok_or(FormError::Malformed("a part without a closing boundary"))?;
        let (name, is_file) = disposition(head)?;
        if fields.len() == MAX_FIELDS {
            return Err(FormError::TooMany);
        }
        let value = if is_file { &[][..] } else { &body[content_start..content_end] };
        fields.push((Cow::Owned(name.into_bytes()), Cow::Borrowed(value)));
        files.push(is_file);
        pos = content_end + delim.len();
    }
}

/// The field name of a part's `Content-Disposition: form-data; name="…"`, and whether the
/// part is a file. An empty name, and `name*=` (an RFC 8187 name, which RFC 7578 forbids and
/// which readers take or ignore), are refused.
fn disposition(head: &str) -> Result<(String, bool), FormError> {
    let line = head
        .split("\r\n")
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition")))
        .map(|(_, v)| v)
        .ok_or(FormError::Malformed("a part without Content-Disposition"))?;
    let mut name = None;
    let mut file = false;
    for param in split_params(line).into_iter().skip(1) {
        let Some((k, v)) = param.split_once('=') else { continue };
        let v = unquote(v.trim());
        match k.trim().to_ascii_lowercase().as_str() {
            "name" if name.is_some() => return Err(FormError::Malformed("a part named twice")),
            "name" if v.is_empty() => return Err(FormError::EmptyName),
            "name" => name = Some(v),
            "name*" => return Err(FormError::ExtendedName),
            "filename" | "filename*" => file = true,
            _ => {}
        }
    }
    Ok((name.ok_or(FormError::Malformed("a part without a name"))?, file))
}

/// Splits `form-data; name="a;b"; filename=x` at the semicolons outside quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
            }
            out
        }
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, v.parse().unwrap());
        h
    }

    #[test]
    fn urlencoded_fields() {
        let h = ct("application/x-www-form-urlencoded; charset=utf-8");
        let f = Form::parse(&h, b"timestamp=1700000000&token=ab%2Bc&signature=de+f").unwrap();
        assert_eq!(f.get("token").unwrap(), Some("ab+c"));
        assert_eq!(f.get("signature").unwrap(), Some("de f"));
        assert_eq!(f.get("nope").unwrap(), None);
        // Bytes as sent: two bodies differing in an invalid UTF-8 byte stay different.
        let raw = Form::parse(&h, b"a=%80&b=%81&c=100%&d=%zz").unwrap();
        let all = raw.sorted().unwrap();
        assert_eq!(all, [(&b"a"[..], &b"\x80"[..]), (b"b", b"\x81"), (b"c", b"100%"), (b"d", b"%zz")]);
        assert!(matches!(raw.get("a"), Err(FormError::Malformed(_))));
        let twice = Form::parse(&h, b"token=a&token=b").unwrap();
        assert_eq!(twice.get("token"), Err(FormError::Duplicate("token".into())));
        assert_eq!(twice.sorted(), Err(FormError::Duplicate("token".into())));
        let many = "a=1&".repeat(MAX_FIELDS + 1);
        assert_eq!(Form::parse(&h, many.as_bytes()).unwrap_err(), FormError::TooMany);
        assert_eq!(Form::parse(&ct("application/json"), b"{}").unwrap_err(), FormError::NotForm);
        assert_eq!(Form::parse(&HeaderMap::new(), b"a=1").unwrap_err(), FormError::NotForm);
    }

    #[test]
    fn multipart_fields() {
        let h = ct("multipart/form-data; boundary=\"XyZ\"");
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nabc\r\n\
--XyZ\r\ncontent-disposition: form-data; name=\"body-plain\"\r\nContent-Type: text/plain\r\n\r\nline1\r\nline2\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"a;b.txt\"\r\n\r\nFILE\r\n\
--XyZ--\r\n";
        let f = Form::parse(&h, body).unwrap();
        assert_eq!(f.get("token").unwrap(), Some("abc"));
        assert_eq!(f.get("body-plain").unwrap(), Some("line1\r\nline2"));
        // A file is kept by name, but never read as a signed value.
        assert_eq!(f.get("attachment-1"), Err(FormError::File("attachment-1".into())));
        assert_eq!(f.file_part().as_deref(), Some("attachment-1"));
    }

    #[test]
    fn multipart_refusals() {
        let h = ct("multipart/form-data; boundary=B");
        let part = |name: &str, v: &str| {
            format!("--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{v}\r\n")
        };
        let twice = format!("{}{}--B--", part("token", "a"), part("token", "b"));
        assert_eq!(
            Form::parse(&h, twice.as_bytes()).unwrap().get("token"),
            Err(FormError::Duplicate("token".into()))
        );
        let unclosed = "--B\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nabc";
        assert!(matches!(Form::parse(&h, unclosed.as_bytes()), Err(FormError::Malformed(_))));
        let nameless = "--B\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--B--";
        assert!(matches!(Form::parse(&h, nameless.as_bytes()), Err(FormError::Malformed(_))));
        let no_headers_end = format!("--B\r\n{}", "X: y\r\n".repeat(2000));
        assert!(matches!(Form::parse(&h, no_headers_end.as_bytes()), Err(FormError::Malformed(_))));
        assert!(matches!(Form::parse(&ct("multipart/form-data"), b"--B--"), Err(FormError::Malformed(_))));
        assert!(matches!(Form::parse(&h, b"no boundary here"), Err(FormError::Malformed(_))));
        let many: String =
            (0..=MAX_FIELDS).map(|i| part(&format!("f{i}"), "v")).collect::<String>() + "--B--";
        assert_eq!(Form::parse(&h, many.as_bytes()).unwrap_err(), FormError::TooMany);
    }

    #[test]
    fn empty_and_extended_names_are_refused() {
        let u = ct(URLENCODED);
        assert_eq!(Form::parse(&u, b"a=1&=x").unwrap_err(), FormError::EmptyName);
        assert_eq!(Form::parse(&u, b"=").unwrap_err(), FormError::EmptyName);
        // Empty pairs (a trailing `&`) are no field at all.
        assert_eq!(Form::parse(&u, b"a=1&&").unwrap().sorted().unwrap(), [(&b"a"[..], &b"1"[..])]);
        let h = ct("multipart/form-data; boundary=B");
        let empty = "--B\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nv\r\n--B--";
        assert_eq!(Form::parse(&h, empty.as_bytes()).unwrap_err(), FormError::EmptyName);
        let ext = "--B\r\nContent-Disposition: form-data; name=\"a\"; name*=UTF-8''b\r\n\r\nv\r\n--B--";
        assert_eq!(Form::parse(&h, ext.as_bytes()).unwrap_err(), FormError::ExtendedName);
        let only_ext = "--B\r\nContent-Disposition: form-data; name*=UTF-8''b\r\n\r\nv\r\n--B--";
        assert_eq!(Form::parse(&h, only_ext.as_bytes()).unwrap_err(), FormError::ExtendedName);
    }

    #[test]
    fn file_parts_are_never_read_as_signed() {
        let h = ct("multipart/form-data; boundary=B");
        let body = "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n\
--B\r\nContent-Disposition: form-data; name=\"token\"; filename=\"t\"\r\n\r\nFILE\r\n--B--";
        let f = Form::parse(&h, body.as_bytes()).unwrap();
        assert_eq!(f.get("a").unwrap(), Some("1"));
        assert_eq!(f.get("token"), Err(FormError::File("token".into())));
        assert_eq!(f.sorted(), Err(FormError::File("token".into())));
        assert_eq!(f.file_part().as_deref(), Some("token"));
        // Every field signed: only a url-encoded body is read.
        assert_eq!(Form::parse_urlencoded(&h, body.as_bytes()).unwrap_err(), FormError::NotUrlencoded);
        assert_eq!(Form::parse_urlencoded(&HeaderMap::new(), b"a=1").unwrap_err(), FormError::NotUrlencoded);
        let u =
            Form::parse_urlencoded(&ct("application/x-www-form-urlencoded; charset=utf-8"), b"a=1").unwrap();
        assert_eq!(u.file_part(), None);
    }

    #[test]
    fn signed_id_is_the_digest_of_the_signed_string() {
        // Where the signed string runs together, so does the id: one signature, one event.
        assert_eq!(signed_id([&b"ab"[..], b"c"]), signed_id([&b"a"[..], b"bc"]));
        assert_ne!(signed_id([&b"abc"[..]]), signed_id([&b"abd"[..]]));
        assert_ne!(signed_id([&b"abc"[..]]), crate::verify::body_sha256(b"abc"), "domain-separated");
    }

    #[test]
    fn a_part_named_twice_is_refused() {
        let h = ct("multipart/form-data; boundary=B");
        let body = "--B\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nv\r\n--B--";
        assert!(matches!(Form::parse(&h, body.as_bytes()), Err(FormError::Malformed(_))));
    }

    #[test]
    fn form_sources_in_profiles() {
        use crate::verify::profile::{Profile, ProfileSet, TimestampSource};
        use crate::verify::{Secret, Verifier};
        let yaml = |extra: &str| {
            Profile::from_yaml(
                "x.yaml",
                &format!("name: x\nsignature: {{form: sig, algorithm: hmac-sha256, encoding: hex, payload: '{{form:ts}}{{form:tok}}'}}\n{extra}"),
            )
        };
        let p = yaml("timestamp: {form: ts, check: true}\nreplay: {form: tok}\n").unwrap();
        assert!(matches!(p.timestamp.as_ref().unwrap().source, TimestampSource::Form(_)));
        assert_eq!(p.replay_form.as_deref(), Some("tok"));
        // Only a signed field can be a nonce or a checked timestamp.
        assert!(yaml("replay: {form: other}\n").unwrap_err().message.contains("covered by the signature"));
        assert!(yaml("timestamp: {form: other, check: true}\n").unwrap_err().message.contains("unsigned"));
        assert!(yaml("replay: {form: tok, json: /t}\n").is_err());
        assert!(Profile::from_yaml(
            "x.yaml",
            "name: x\nsignature: {form: '', algorithm: hmac-sha256, encoding: hex}\n"
        )
        .is_err());

        // The gateway's nonce for Mailgun Routes is read from the form, as the Content-Type says.
        let routes = ProfileSet::builtin().get("mailgun-routes").unwrap().clone();
        let v = Verifier::new(routes, &[Secret::from("k".to_string())], None).unwrap();
        let nonce = v.replay_nonce(&ct(URLENCODED), b"timestamp=1&token=abc&signature=00").unwrap();
        assert_eq!(nonce.as_deref(), Some("abc"));
        assert!(v.replay_nonce(&ct(URLENCODED), b"token=a&token=b").unwrap_err().is_ambiguous());
        assert!(v.replay_nonce(&ct("application/json"), b"{}").is_err());
    }
}
