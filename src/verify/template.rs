//! Signed-payload templates such as `{timestamp}.{body}`: parsed once, fed to the MAC in parts.

use crate::jsonptr::Pointer;
use std::fmt;

/// One piece of a signed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Bytes written literally in the template.
    Literal(Box<[u8]>),
    /// The raw request body, byte for byte.
    Body,
    /// The timestamp exactly as the provider sent it.
    Timestamp,
    /// The event id exactly as the provider sent it.
    Id,
    /// The request method (`POST`).
    Method,
    /// The URL the provider sent the request to (a route's `public_url`, or the one received).
    Url,
    /// A value inside the JSON body, as a string (Mailgun signs body fields, not the body).
    Json(Pointer),
    /// The value of a form field of the body (Mailgun Routes).
    Form(String),
}

/// A parsed template. Placeholders are `{body}`, `{timestamp}`, `{id}`, `{method}`, `{url}`
/// `{json:/pointer}` and `{form:name}`; `{{` and `}}` stand for literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error(
        "unknown placeholder {{{0}}} (known: body, timestamp, id, method, url, json:/pointer, form:name)"
    )]
    Unknown(String),
    #[error("{{json:…}}: {0}")]
    Pointer(String),
    #[error("unclosed '{{' at byte {0}")]
    Unclosed(usize),
    #[error("a lone '}}' at byte {0}; write '}}}}' for a literal brace")]
    LoneClose(usize),
    #[error("the template must contain {{body}} exactly once")]
    Body,
    #[error("the template may contain {{body}} at most once")]
    BodyTwice,
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut segments = Vec::new();
        let mut lit = Vec::new();
        let bytes = source.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    lit.push(b'{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    lit.push(b'}');
                    i += 2;
                }
                b'}' => return Err(TemplateError::LoneClose(i)),
                b'{' => {
                    let end = source[i..].find('}').map(|e| i + e).ok_or(TemplateError::Unclosed(i))?;
                    let seg = match &source[i + 1..end] {
                        "body" => Segment::Body,
                        "timestamp" => Segment::Timestamp,
                        "id" => Segment::Id,
                        "method" => Segment::Method,
                        "url" => Segment::Url,
                        other => match (other.strip_prefix("json:"), other.strip_prefix("form:")) {
                            (Some(p), _) => Segment::Json(Pointer::parse(p).map_err(TemplateError::Pointer)?),
                            (_, Some(f)) if !f.is_empty() => Segment::Form(f.to_string()),
                            _ => return Err(TemplateError::Unknown(other.to_string())),
                        },
                    };
                    if !lit.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut lit).into()));
                    }
                    segments.push(seg);
                    i = end + 1;
                }
                b => {
                    lit.push(b);
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            segments.push(Segment::Literal(lit.into()));
        }
        if segments.iter().filter(|s| **s == Segment::Body).count() > 1 {
            return Err(TemplateError::BodyTwice);
        }
        Ok(Template { source: source.to_string(), segments })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn uses(&self, seg: &Segment) -> bool {
        self.segments.contains(seg)
    }

    /// Whether any `{json:…}` placeholder is used.
    pub fn uses_json(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Json(_)))
    }

    /// Whether any `{form:…}` placeholder is used.
    pub fn uses_form(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Form(_)))
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_templates() {
        let t = Template::parse("v0:{timestamp}:{body}").unwrap();
        assert_eq!(
            t.segments(),
            &[
                Segment::Literal(b"v0:".to_vec().into()),
                Segment::Timestamp,
                Segment::Literal(b":".to_vec().into()),
                Segment::Body
            ]
        );
        let t = Template::parse("{id}.{timestamp}.{body}").unwrap();
        assert!(t.uses(&Segment::Id) && t.uses(&Segment::Timestamp));
        assert_eq!(Template::parse("{body}").unwrap().segments(), &[Segment::Body]);
        assert_eq!(
            Template::parse("{{{body}}}").unwrap().segments().len(),
            3,
            "escaped braces around the body"
        );
    }

    #[test]
    fn rejects_bad_templates() {
        assert_eq!(Template::parse("{nope}.{body}"), Err(TemplateError::Unknown("nope".into())));
        assert_eq!(Template::parse("{body"), Err(TemplateError::Unclosed(0)));
        assert_eq!(Template::parse("{body}{body}"), Err(TemplateError::BodyTwice));
        assert!(matches!(Template::parse("{json:x}"), Err(TemplateError::Pointer(_))));
        let t = Template::parse("{timestamp}{json:/signature/token}").unwrap();
        assert!(t.uses_json() && !t.uses(&Segment::Body));
        assert_eq!(Template::parse("}{body}"), Err(TemplateError::LoneClose(0)));
        let t = Template::parse("{form:timestamp}{form:token}").unwrap();
        assert_eq!(t.segments(), &[Segment::Form("timestamp".into()), Segment::Form("token".into())]);
        assert!(t.uses_form() && !t.uses_json());
        assert_eq!(Template::parse("{form:}"), Err(TemplateError::Unknown("form:".into())));
    }
}
