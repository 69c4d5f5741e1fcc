//! Handshakes as data: the endpoint-verification requests providers send before (or between)
//! events, described by a profile's `handshake:` block and answered by the gateway itself,
//! never forwarded and never given an idempotency key.
//!
//! ```yaml
//! handshake:
//!   method: GET                        # GET: answered before authentication, and only when
//!                                      # the request has exactly this shape; POST: answered
//!                                      # after the request's signature verified
//!   when:                              # every condition must hold
//!     query: {hub.mode: subscribe}     # query parameters (each exactly once) and their values
//!     header: {X-Kind: verification}   # header values
//!     json: {/type: 1}                 # POST only: values in the JSON body (compared as JSON)
//!   challenge: {query: hub.challenge}  # where the value to echo is: query, header or json;
//!                                      # present and non-empty, or it is no handshake
//!   verify_token: {query: hub.verify_token}  # GET only: must equal the route's verify_token
//!   reply: {text: "{challenge}"}       # text/plain; or {json: {…}}: an object whose strings
//!                                      # may hold {challenge}, {challenge_hmac_hex} and
//!                                      # {challenge_hmac_base64} (HMAC-SHA256 of the challenge
//!                                      # under the route's secret)
//! ```
//!
//! `slack-url-verification` and `zoom-url-validation` are shorthands for such blocks.
//!
//! A reply holding `{challenge_hmac_hex}` or `{challenge_hmac_base64}` MACs the challenge, and
//! a GET handshake answers anyone: it is a MAC oracle. So such a handshake answers only a
//! challenge of a token's shape ([`token_shaped`]: at most [`MAX_MAC_CHALLENGE`] bytes of
//! `[A-Za-z0-9+/=_.~-]`) and refuses any other (GET 403, POST 400); and a profile with such
//! a GET handshake must sign `{body}` with `body: json`, so every signed string holds a `{` or
//! `[` that no answered challenge can (see `RawProfile::validate`).

use super::mac::Algorithm;
use super::Verifier;
use crate::jsonptr::Pointer;
use base64::Engine;
use http::{HeaderMap, HeaderName, Method};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// A challenge longer than this is not echoed: no provider sends one near it.
pub const MAX_CHALLENGE: usize = 2048;

/// A challenge whose HMAC is returned is a token: at most this many bytes.
pub const MAX_MAC_CHALLENGE: usize = 256;

/// Whether `c` has a token's shape: 1 to [`MAX_MAC_CHALLENGE`] bytes of
/// `[A-Za-z0-9+/=_.~-]` (base64, base64url, hex, decimal and dotted ids). No JSON document and
/// no JSON object or array in any signed string can have it.
pub fn token_shaped(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= MAX_MAC_CHALLENGE
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'.' | b'~' | b'-'))
}

/// Slack's `url_verification`, as data.
const SLACK: &str = "method: POST\nwhen: {json: {/type: url_verification}}\nchallenge: {json: /challenge}\nreply: {json: {challenge: '{challenge}'}}\n";
/// Zoom's `endpoint.url_validation`, as data.
const ZOOM: &str = "method: POST\nwhen: {json: {/event: endpoint.url_validation}}\nchallenge: {json: /payload/plainToken}\nreply: {json: {plainToken: '{challenge}', encryptedToken: '{challenge_hmac_hex}'}}\n";

// ---------------------------------------------------------------------------------------------
// Raw YAML

/// `handshake:` as written: a shorthand name or a block.
#[derive(Debug)]
pub enum RawHandshake {
    Named(String),
    Spec(Box<RawSpec>),
}

impl<'de> Deserialize<'de> for RawHandshake {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHandshake;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("slack-url-verification, zoom-url-validation, or a handshake block")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawHandshake, E> {
                Ok(RawHandshake::Named(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawHandshake, A::Error> {
                RawSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|s| RawHandshake::Spec(Box::new(s)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    method: HandshakeMethod,
    #[serde(default)]
    when: RawWhen,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge: Option<RawPlace>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify_token: Option<RawPlace>,
    reply: RawReply,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    query: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    header: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    json: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPlace {
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawReply {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<serde_json::Value>,
}

/// When a handshake is answered: GET and HEAD before authentication, POST after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HandshakeMethod {
    Get,
    Post,
    /// A URL check (Trello, Mandrill): `HEAD` answered 200 with no body; it carries nothing.
    Head,
}

impl HandshakeMethod {
    /// Answered before authentication and before any body is read (GET, HEAD).
    pub fn unsigned(self) -> bool {
        matches!(self, HandshakeMethod::Get | HandshakeMethod::Head)
    }
}

// ---------------------------------------------------------------------------------------------
// Validated

/// A validated handshake. Serialises as its block (shorthands expanded), for `providers --json`.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub method: HandshakeMethod,
    /// The shorthand it was written as, if any.
    pub name: Option<String>,
    query: Vec<(String, String)>,
    header: Vec<(HeaderName, String)>,
    json: Vec<(Pointer, serde_json::Value)>,
    challenge: Option<Place>,
    verify_token: Option<Place>,
    reply: Reply,
    /// The reply holds the challenge's HMAC.
    macs: bool,
    source: RawSpec,
}

impl Serialize for Handshake {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(s)
    }
}

#[derive(Debug, Clone)]
enum Place {
    Query(String),
    Header(HeaderName),
    Json(Pointer),
}

#[derive(Debug, Clone)]
enum Reply {
    Text(Vec<Piece>),
    Json(JsonTemplate),
}

#[derive(Debug, Clone)]
enum JsonTemplate {
    Str(Vec<Piece>),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
    Value(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Challenge,
    HmacHex,
    HmacBase64,
}

fn pieces(s: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('{') {
        if start > 0 {
            out.push(Piece::Lit(rest[..start].to_string()));
        }
        let end = rest[start..].find('}').ok_or_else(|| format!("reply: unclosed '{{' in '{s}'"))? + start;
        out.push(match &rest[start + 1..end] {
            "challenge" => Piece::Challenge,
            "challenge_hmac_hex" => Piece::HmacHex,
            "challenge_hmac_base64" => Piece::HmacBase64,
            other => {
                return Err(format!(
                    "reply: unknown placeholder {{{other}}} (known: challenge, challenge_hmac_hex, challenge_hmac_base64)"
                ))
            }
        });
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Lit(rest.to_string()));
    }
    Ok(out)
}

fn json_template(v: &serde_json::Value, all: &mut Vec<Piece>) -> Result<JsonTemplate, String> {
    Ok(match v {
        serde_json::Value::String(s) => {
            let p = pieces(s)?;
            all.extend(p.iter().cloned());
            JsonTemplate::Str(p)
        }
        serde_json::Value::Array(a) => {
            JsonTemplate::Array(a.iter().map(|v| json_template(v, all)).collect::<Result<_, _>>()?)
        }
        serde_json::Value::Object(o) => JsonTemplate::Object(
            o.iter().map(|(k, v)| Ok((k.clone(), json_template(v, all)?))).collect::<Result<_, String>>()?,
        ),
        other => JsonTemplate::Value(other.clone()),
    })
}

fn header_name(s: &str, what: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("{what}: '{s}' is not a header name"))
}

impl RawPlace {
    fn validate(&self, what: &str, method: HandshakeMethod) -> Result<Place, String> {
        let place = match (&self.query, &self.header, &self.json) {
            (Some(q), None, None) if !q.is_empty() => Place::Query(q.clone()),
            (None, Some(h), None) => Place::Header(header_name(h, what)?),
            (None, None, Some(j)) => Place::Json(Pointer::parse(j).map_err(|e| format!("{what}.json: {e}"))?),
            _ => return Err(format!("{what}: give exactly one of query, header or json")),
        };
        if method == HandshakeMethod::Get && matches!(place, Place::Json(_)) {
            return Err(format!("{what}.json: a GET handshake has no body"));
        }
        Ok(place)
    }
}

impl RawHandshake {
    /// Validates the block (or expands the shorthand) for a profile signing with `alg`.
    pub fn validate(self, alg: Algorithm) -> Result<Handshake, String> {
        let (spec, name) = match self {
            RawHandshake::Spec(s) => (*s, None),
            RawHandshake::Named(n) => {
                let text = match n.as_str() {
                    "slack-url-verification" => SLACK,
                    "zoom-url-validation" => ZOOM,
                    other => {
                        return Err(format!(
                            "unknown handshake '{other}' (known: slack-url-verification, zoom-url-validation, or a block)"
                        ))
                    }
                };
                (serde_yaml_ng::from_str(text).expect("built-in handshake"), Some(n))
            }
        };
        spec.validate(alg, name)
    }
}

impl RawSpec {
    fn validate(self, alg: Algorithm, name: Option<String>) -> Result<Handshake, String> {
        let method = self.method;
        if method == HandshakeMethod::Head {
            // A URL check: nothing to read and nothing to echo.
            let empty =
                self.when.query.is_empty() && self.when.header.is_empty() && self.when.json.is_empty();
            if !empty || self.challenge.is_some() || self.verify_token.is_some() {
                return Err(
                    "a HEAD handshake only answers 200: when, challenge and verify_token do not apply".into(),
                );
            }
            if self.reply.json.is_some() || self.reply.text.as_deref().is_some_and(|t| !t.is_empty()) {
                return Err("reply: a HEAD handshake has no body; write reply: {text: \"\"}".into());
            }
        }
        let get = method == HandshakeMethod::Get;
        if get && !self.when.json.is_empty() {
            return Err("when.json: a GET handshake has no body".into());
        }
        let challenge = self.challenge.as_ref().map(|c| c.validate("challenge", method)).transpose()?;
        let verify_token =
            self.verify_token.as_ref().map(|c| c.validate("verify_token", method)).transpose()?;
        if !get && verify_token.is_some() {
            return Err("verify_token: a POST handshake is authenticated by its signature".into());
        }
        // Without a narrow shape, ordinary requests would be taken for handshakes.
        if get && challenge.is_none() {
            return Err("challenge: a GET handshake echoes a challenge; say where it is".into());
        }
        if method == HandshakeMethod::Post
            && self.when.query.is_empty()
            && self.when.header.is_empty()
            && self.when.json.is_empty()
        {
            return Err("when: a POST handshake needs a condition, or every delivery would be one".into());
        }
        let mut used = Vec::new();
        let reply = match (&self.reply.text, &self.reply.json) {
            (Some(t), None) => {
                let p = pieces(t)?;
                used.extend(p.iter().cloned());
                Reply::Text(p)
            }
            (None, Some(j @ serde_json::Value::Object(_))) => Reply::Json(json_template(j, &mut used)?),
            (None, Some(_)) => return Err("reply.json: must be an object".into()),
            _ => return Err("reply: give exactly one of text or json".into()),
        };
        if challenge.is_none() && used.iter().any(|p| !matches!(p, Piece::Lit(_))) {
            return Err("reply: uses the challenge, but no challenge is given".into());
        }
        let hmac = used.iter().any(|p| matches!(p, Piece::HmacHex | Piece::HmacBase64));
        if hmac && !matches!(alg, Algorithm::HmacSha1 | Algorithm::HmacSha256 | Algorithm::HmacSha512) {
            return Err("reply: the challenge's HMAC needs an HMAC secret".into());
        }
        let query = self.when.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let header = self
            .when
            .header
            .iter()
            .map(|(k, v)| Ok((header_name(k, "when.header")?, v.clone())))
            .collect::<Result<_, String>>()?;
        let json = self
            .when
            .json
            .iter()
            .map(|(k, v)| Ok((Pointer::parse(k).map_err(|e| format!("when.json: {e}"))?, v.clone())))
            .collect::<Result<_, String>>()?;
        Ok(Handshake {
            method,
            name,
            query,
            header,
            json,
            challenge,
            verify_token,
            reply,
            macs: hmac,
            source: self,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Answering

/// A route's `verify_token`. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct VerifyToken(String);

impl VerifyToken {
    pub fn new(value: String) -> Result<Self, &'static str> {
        if value.is_empty() {
            return Err("is empty");
        }
        Ok(VerifyToken(value))
    }

    /// Constant-time comparison with what a request presents.
    pub fn matches(&self, presented: &[u8]) -> bool {
        super::token::same_secret(self.0.as_bytes(), presented)
    }
}

impl fmt::Debug for VerifyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyToken(<redacted>)")
    }
}

/// The parts of a request a handshake looks at.
pub struct Request<'a> {
    pub method: &'a Method,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Not this handshake: an ordinary request.
    NotHandshake,
    /// The handshake's shape, but its verify token is missing or wrong, or the challenge whose
    /// HMAC would be returned is not a token (the reason, for logs). Never forwarded.
    Refused(&'static str),
    /// Answer 200 with this body.
    Reply { content_type: &'static str, body: String },
}

/// The value of query parameter `name`, when it appears exactly once (percent-decoded).
fn query_one<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    let mut found = form_urlencoded::parse(query?.as_bytes()).filter(|(k, _)| k == name).map(|(_, v)| v);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

fn header_one<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then(|| first.to_str().ok()).flatten()
}

impl Handshake {
    /// Whether the route must configure a `verify_token`.
    pub fn needs_verify_token(&self) -> bool {
        self.verify_token.is_some()
    }

    /// Whether the reply holds the HMAC of the challenge under the route's secret.
    pub fn macs_challenge(&self) -> bool {
        self.macs
    }

    fn read<'a>(
        place: &Place,
        req: &Request<'a>,
        doc: Option<&'a serde_json::Value>,
    ) -> Option<Cow<'a, str>> {
        match place {
            Place::Query(q) => query_one(req.query, q),
            Place::Header(h) => header_one(req.headers, h).map(Cow::Borrowed),
            Place::Json(p) => doc?.pointer(p.as_str())?.as_str().map(Cow::Borrowed),
        }
    }

    /// Answers `req` if it is this handshake. `token` is the route's verify token; `key` the
    /// secret bytes the challenge's HMAC is made with.
    pub fn answer(&self, req: &Request<'_>, token: Option<&VerifyToken>, key: Option<&[u8]>) -> Answer {
        let want = match self.method {
            HandshakeMethod::Get => Method::GET,
            HandshakeMethod::Post => Method::POST,
            HandshakeMethod::Head => Method::HEAD,
        };
        if *req.method != want {
            return Answer::NotHandshake;
        }
        if !self.query.iter().all(|(k, v)| query_one(req.query, k).is_some_and(|got| got == v.as_str())) {
            return Answer::NotHandshake;
        }
        if !self.header.iter().all(|(k, v)| header_one(req.headers, k) == Some(v.as_str())) {
            return Answer::NotHandshake;
        }
        let needs_doc = !self.json.is_empty() || matches!(self.challenge, Some(Place::Json(_)));
        // Handshake bodies are small JSON objects; anything else is an ordinary delivery.
        let doc: Option<serde_json::Value> = if needs_doc {
            if req.body.first() != Some(&b'{') {
                return Answer::NotHandshake;
            }
            match serde_json::from_slice(req.body) {
                Ok(d) => Some(d),
                Err(_) => return Answer::NotHandshake,
            }
        } else {
            None
        };
        if !self.json.iter().all(|(p, v)| doc.as_ref().and_then(|d| d.pointer(p.as_str())) == Some(v)) {
            return Answer::NotHandshake;
        }
        let challenge = match &self.challenge {
            Some(place) => match Self::read(place, req, doc.as_ref()) {
                Some(c) if !c.is_empty() && c.len() <= MAX_CHALLENGE => Some(c),
                _ => return Answer::NotHandshake,
            },
            None => None,
        };
        if let Some(place) = &self.verify_token {
            let Some(presented) = Self::read(place, req, doc.as_ref()).filter(|t| !t.is_empty()) else {
                return Answer::Refused("the verify token is missing");
            };
            if !token.is_some_and(|t| t.matches(presented.as_bytes())) {
                return Answer::Refused("the verify token does not match the route's");
            }
        }
        let challenge = challenge.as_deref().unwrap_or("");
        // The HMAC of an arbitrary string would sign it: only a token's is given.
        if self.macs && !token_shaped(challenge) {
            return Answer::Refused("the challenge is not a token (at most 256 bytes of [A-Za-z0-9+/=_.~-])");
        }
        let render = |p: &[Piece]| -> Option<String> {
            let mut out = String::new();
            for piece in p {
                match piece {
                    Piece::Lit(s) => out.push_str(s),
                    Piece::Challenge => out.push_str(challenge),
                    Piece::HmacHex => out.push_str(&hex::encode(hmac(key?, challenge))),
                    Piece::HmacBase64 => {
                        out.push_str(&base64::engine::general_purpose::STANDARD.encode(hmac(key?, challenge)))
                    }
                }
            }
            Some(out)
        };
        match &self.reply {
            Reply::Text(p) => match render(p) {
                Some(body) => Answer::Reply { content_type: "text/plain", body },
                None => Answer::NotHandshake,
            },
            Reply::Json(t) => match fill(t, &render) {
                Some(v) => Answer::Reply { content_type: "application/json", body: v.to_string() },
                None => Answer::NotHandshake,
            },
        }
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    super::mac::MacKey::new(Algorithm::HmacSha256, key).digest([data.as_bytes()]).as_bytes().to_vec()
}

fn fill(t: &JsonTemplate, render: &dyn Fn(&[Piece]) -> Option<String>) -> Option<serde_json::Value> {
    Some(match t {
        JsonTemplate::Str(p) => serde_json::Value::String(render(p)?),
        JsonTemplate::Array(a) => {
            serde_json::Value::Array(a.iter().map(|t| fill(t, render)).collect::<Option<_>>()?)
        }
        JsonTemplate::Object(o) => serde_json::Value::Object(
            o.iter().map(|(k, t)| Some((k.clone(), fill(t, render)?))).collect::<Option<_>>()?,
        ),
        JsonTemplate::Value(v) => v.clone(),
    })
}

impl Verifier {
    /// The decoded bytes of secret `index`, for a handshake's HMAC of its challenge; `None`
    /// for keys that are not HMAC secrets.
    pub fn handshake_key(&self, index: usize) -> Option<&[u8]> {
        let hmac = matches!(
            self.profile.algorithm,
            Algorithm::HmacSha1 | Algorithm::HmacSha256 | Algorithm::HmacSha512
        );
        self.raw.get(index).filter(|k| hmac && !k.is_empty()).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<Handshake, String> {
        let raw: RawHandshake = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        raw.validate(Algorithm::HmacSha256)
    }

    fn get(h: &Handshake, query: &str, headers: &[(&str, &str)], token: Option<&str>) -> Answer {
        let mut hm = HeaderMap::new();
        for (k, v) in headers {
            hm.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let t = token.map(|t| VerifyToken::new(t.into()).unwrap());
        let req = Request { method: &Method::GET, query: Some(query), headers: &hm, body: b"" };
        h.answer(&req, t.as_ref(), Some(b"secret"))
    }

    fn post(h: &Handshake, body: &str) -> Answer {
        let hm = HeaderMap::new();
        let req = Request { method: &Method::POST, query: None, headers: &hm, body: body.as_bytes() };
        h.answer(&req, None, Some(b"secret"))
    }

    fn text(s: &str) -> Answer {
        Answer::Reply { content_type: "text/plain", body: s.into() }
    }

    fn json(s: &str) -> Answer {
        Answer::Reply { content_type: "application/json", body: s.into() }
    }

    const META: &str = "method: GET\nwhen: {query: {hub.mode: subscribe}}\nchallenge: {query: hub.challenge}\nverify_token: {query: hub.verify_token}\nreply: {text: '{challenge}'}\n";

    #[test]
    fn meta_echoes_the_challenge_only_with_the_right_token() {
        let h = spec(META).unwrap();
        assert!(h.needs_verify_token());
        let q = "hub.mode=subscribe&hub.verify_token=tok&hub.challenge=1158201444";
        assert_eq!(get(&h, q, &[], Some("tok")), text("1158201444"));
        assert_eq!(
            get(&h, q, &[], Some("other")),
            Answer::Refused("the verify token does not match the route's")
        );
        let no_token = "hub.mode=subscribe&hub.challenge=1";
        assert_eq!(get(&h, no_token, &[], Some("tok")), Answer::Refused("the verify token is missing"));
        // Not the shape: no challenge, another mode, a parameter twice, or a POST.
        assert_eq!(
            get(&h, "hub.mode=subscribe&hub.verify_token=tok", &[], Some("tok")),
            Answer::NotHandshake
        );
        assert_eq!(
            get(&h, "hub.mode=x&hub.verify_token=tok&hub.challenge=1", &[], Some("tok")),
            Answer::NotHandshake
        );
        let twice = "hub.mode=subscribe&hub.verify_token=tok&hub.challenge=1&hub.challenge=2";
        assert_eq!(get(&h, twice, &[], Some("tok")), Answer::NotHandshake);
        assert_eq!(post(&h, "{}"), Answer::NotHandshake);
        // Percent-decoded, and never longer than MAX_CHALLENGE.
        assert_eq!(
            get(&h, "hub.mode=subscribe&hub.verify_token=t%20k&hub.challenge=a%2Bb", &[], Some("t k")),
            text("a+b")
        );
        let long = format!(
            "hub.mode=subscribe&hub.verify_token=tok&hub.challenge={}",
            "a".repeat(MAX_CHALLENGE + 1)
        );
        assert_eq!(get(&h, &long, &[], Some("tok")), Answer::NotHandshake);
    }

    #[test]
    fn twitter_crc_and_okta_and_discord() {
        let twitter = spec("method: GET\nchallenge: {query: crc_token}\nreply: {json: {response_token: 'sha256={challenge_hmac_base64}'}}\n").unwrap();
        // HMAC-SHA256("secret", "abc") in base64.
        let mac = base64::engine::general_purpose::STANDARD.encode(hmac(b"secret", "abc"));
        assert_eq!(
            get(&twitter, "crc_token=abc", &[], None),
            json(&format!("{{\"response_token\":\"sha256={mac}\"}}"))
        );
        let okta = spec("method: GET\nchallenge: {header: x-okta-verification-challenge}\nreply: {json: {verification: '{challenge}'}}\n").unwrap();
        assert_eq!(
            get(&okta, "", &[("X-Okta-Verification-Challenge", "a\"b")], None),
            json(r#"{"verification":"a\"b"}"#)
        );
        assert_eq!(get(&okta, "", &[], None), Answer::NotHandshake);
        let discord = spec("method: POST\nwhen: {json: {/type: 1}}\nreply: {json: {type: 1}}\n").unwrap();
        assert_eq!(post(&discord, r#"{"type":1,"id":"x"}"#), json(r#"{"type":1}"#));
        assert_eq!(post(&discord, r#"{"type":"1"}"#), Answer::NotHandshake);
        assert_eq!(post(&discord, r#"{"type":2}"#), Answer::NotHandshake);
        assert_eq!(post(&discord, "[1]"), Answer::NotHandshake);
    }

    #[test]
    fn a_challenge_whose_hmac_is_returned_must_be_a_token() {
        let twitter = spec("method: GET\nchallenge: {query: crc_token}\nreply: {json: {response_token: 'sha256={challenge_hmac_base64}'}}\n").unwrap();
        assert!(twitter.macs_challenge());
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(hmac(b"secret", s));
        // The attack: a forged delivery body as the crc_token would have its signature returned.
        let forged = r#"{"for_user_id":"1","tweet_create_events":[{"text":"forged"}]}"#;
        let q: String =
            form_urlencoded::Serializer::new(String::new()).append_pair("crc_token", forged).finish();
        assert!(matches!(get(&twitter, &q, &[], None), Answer::Refused(why) if why.contains("not a token")));
        // A real CRC token (43 characters of base64url) is still answered; so is base64 with + / =.
        let token = "Qm9vdHN0cmFwLWNyYy10b2tlbi0wMTIzNDU2Nzg5YWJj";
        assert_eq!(token.len(), 44);
        let token = &token[..43];
        assert_eq!(
            get(&twitter, &format!("crc_token={token}"), &[], None),
            json(&format!("{{\"response_token\":\"sha256={}\"}}", b64(token)))
        );
        assert_eq!(
            get(&twitter, "crc_token=a%2Bb%2Fc%3D.~_-9", &[], None),
            json(&format!("{{\"response_token\":\"sha256={}\"}}", b64("a+b/c=.~_-9")))
        );
        // At most MAX_MAC_CHALLENGE bytes, and nothing outside the charset (a space, a quote,
        // brackets, a non-ASCII letter).
        let longest = "A".repeat(MAX_MAC_CHALLENGE);
        assert!(matches!(get(&twitter, &format!("crc_token={longest}"), &[], None), Answer::Reply { .. }));
        let long = format!("crc_token={longest}A");
        assert!(matches!(get(&twitter, &long, &[], None), Answer::Refused(_)));
        for bad in ["a%20b", "a+b", "%5B1%5D", "%22x%22", "%C3%A9", "a%0A", "1%2C2"] {
            let got = get(&twitter, &format!("crc_token={bad}"), &[], None);
            assert!(matches!(got, Answer::Refused(_)), "{bad}: {got:?}");
        }
        // A plain echo (no HMAC) is no oracle and keeps any challenge.
        let echo =
            spec("method: GET\nchallenge: {query: challenge}\nreply: {text: '{challenge}'}\n").unwrap();
        assert!(!echo.macs_challenge());
        assert_eq!(get(&echo, "challenge=%7B%22a%22%3A1%7D", &[], None), text(r#"{"a":1}"#));
        // POST handshakes that MAC the challenge (Zoom) keep the rule too.
        let zoom = RawHandshake::Named("zoom-url-validation".into()).validate(Algorithm::HmacSha256).unwrap();
        let body = r#"{"event":"endpoint.url_validation","payload":{"plainToken":"{\"x\":1}"}}"#;
        assert!(matches!(post(&zoom, body), Answer::Refused(_)));
    }

    #[test]
    fn shorthands_keep_slack_and_zoom() {
        let slack =
            RawHandshake::Named("slack-url-verification".into()).validate(Algorithm::HmacSha256).unwrap();
        assert_eq!(slack.name.as_deref(), Some("slack-url-verification"));
        assert_eq!(
            post(&slack, r#"{"type":"url_verification","challenge":"c1"}"#),
            json(r#"{"challenge":"c1"}"#)
        );
        assert_eq!(post(&slack, r#"{"type":"event_callback","challenge":"c1"}"#), Answer::NotHandshake);
        assert_eq!(post(&slack, r#"{"type":"url_verification","challenge":5}"#), Answer::NotHandshake);
        let zoom = RawHandshake::Named("zoom-url-validation".into()).validate(Algorithm::HmacSha256).unwrap();
        let body = r#"{"event":"endpoint.url_validation","payload":{"plainToken":"p"}}"#;
        let enc = hex::encode(hmac(b"secret", "p"));
        assert_eq!(post(&zoom, body), json(&format!(r#"{{"encryptedToken":"{enc}","plainToken":"p"}}"#)));
    }

    #[test]
    fn nonsensical_blocks_are_refused() {
        for (yaml, why) in [
            ("method: GET\nreply: {text: hi}\n", "echoes a challenge"),
            ("method: HEAD\nchallenge: {query: c}\nreply: {text: ''}\n", "only answers 200"),
            ("method: HEAD\nreply: {text: hi}\n", "has no body"),
            ("method: POST\nchallenge: {json: /c}\nreply: {text: '{challenge}'}\n", "needs a condition"),
            (
                "method: GET\nwhen: {json: {/a: 1}}\nchallenge: {query: c}\nreply: {text: '{challenge}'}\n",
                "no body",
            ),
            ("method: GET\nchallenge: {json: /c}\nreply: {text: '{challenge}'}\n", "no body"),
            (
                "method: POST\nwhen: {json: {/a: 1}}\nverify_token: {query: t}\nreply: {text: x}\n",
                "authenticated by its signature",
            ),
            ("method: GET\nchallenge: {query: c}\nreply: {text: '{nope}'}\n", "unknown placeholder"),
            ("method: GET\nchallenge: {query: c, header: h}\nreply: {text: x}\n", "exactly one"),
            ("method: GET\nchallenge: {query: c}\nreply: {json: [1]}\n", "an object"),
            ("method: GET\nchallenge: {query: c}\nreply: {}\n", "exactly one of text or json"),
            ("method: POST\nwhen: {json: {/a: 1}}\nreply: {text: '{challenge}'}\n", "no challenge is given"),
            ("method: GET\nchallenge: {query: c}\nreply: {text: x}\ncolour: red\n", "colour"),
            ("method: PUT\nchallenge: {query: c}\nreply: {text: x}\n", "PUT"),
        ] {
            let e = spec(yaml).unwrap_err();
            assert!(e.contains(why), "{yaml}: {e}");
        }
        let e = RawHandshake::Named("nope".into()).validate(Algorithm::HmacSha256).unwrap_err();
        assert!(e.contains("unknown handshake"), "{e}");
        let raw: RawHandshake = serde_yaml_ng::from_str(
            "method: GET\nchallenge: {query: c}\nreply: {text: '{challenge_hmac_hex}'}\n",
        )
        .unwrap();
        assert!(raw.validate(Algorithm::Token).unwrap_err().contains("HMAC secret"));
    }

    #[test]
    fn verify_token_debug_is_redacted() {
        let t = VerifyToken::new("s3cr3t-verify".into()).unwrap();
        assert!(!format!("{t:?} {t:#?}").contains("s3cr3t"));
        assert!(VerifyToken::new(String::new()).is_err());
        assert!(t.matches(b"s3cr3t-verify") && !t.matches(b"s3cr3t-verif"));
    }
}
