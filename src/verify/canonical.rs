//! The named canonicalisers, for schemes whose signed payload is not a template over the
//! request: Twilio's and Mandrill's sorted form parameters and Adyen's per-item field lists.

use super::{Input, Verified, Verifier, VerifyError};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The media type of a form body.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// The query parameter by which Twilio binds a non-form body to the signed URL.
const BODY_SHA256: &str = "bodySHA256";

/// Whether the query part of `url` (after its first `?`) has the parameter `name`.
fn has_param(url: &[u8], name: &str) -> bool {
    let Some(q) = url.iter().position(|&b| b == b'?') else { return false };
    form_urlencoded::parse(&url[q + 1..]).any(|(k, _)| k == name)
}

/// Whether Twilio's request is a form, whose decoded parameters are signed (by Content-Type).
pub fn twilio_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(FORM))
}

/// Twilio, chosen by Content-Type. A form body (`application/x-www-form-urlencoded`): the
/// URL, then every form parameter sorted by name (then value), each name followed by its
/// value. Any other body: the URL alone is signed, and must carry `bodySHA256`, the body's
/// hash. Refused: a form whose signed string reads as a URL with `bodySHA256` (a JSON
/// request's signature with the split moved), a form URL with `bodySHA256`, and a non-form
/// request without it.
pub fn twilio(input: &Input<'_>) -> Result<Vec<u8>, VerifyError> {
    let url = input.url;
    if !twilio_form(input.headers) {
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let expected = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == BODY_SHA256)
            .map(|(_, v)| v.into_owned())
            .ok_or(VerifyError::Reinterpreted("a non-form body without bodySHA256 in the URL"))?;
        let actual = hex::encode(Sha256::digest(input.body));
        if !actual.eq_ignore_ascii_case(&expected) {
            return Err(VerifyError::BodyHash);
        }
        return Ok(url.as_bytes().to_vec());
    }
    if has_param(url.as_bytes(), BODY_SHA256) {
        return Err(VerifyError::Reinterpreted("a form request whose URL carries bodySHA256"));
    }
    // The parameters as the bytes they decode to (never replaced where not UTF-8, so that
    // distinct bodies never sign as one); an empty name is refused, as for every signed form.
    let form = super::form::Form::parse_urlencoded(input.headers, input.body)?;
    let mut params = form.fields()?;
    params.sort();
    let mut out = url.as_bytes().to_vec();
    for (k, v) in params {
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    if has_param(&out, BODY_SHA256) {
        return Err(VerifyError::Reinterpreted("the form's signed string reads as a URL with bodySHA256"));
    }
    Ok(out)
}

/// Mandrill: the webhook URL exactly as configured at Mandrill (the route's `public_url`),
/// then every POST field sorted by name, each name followed by its value, with no separator.
/// The body must be a url-encoded form, which is all Mandrill sends (`mandrill_events`): a
/// multipart body would have file parts no signature covers. A field given twice is refused,
/// since Mandrill's own examples read the fields into a map that keeps only one; so is a field
/// with an empty name. What is signed is the decoded fields, not the bytes: the event id is
/// the digest of this string ([`super::form::signed_id`]), one for every encoding of a body.
pub fn mandrill(input: &Input<'_>) -> Result<Vec<u8>, VerifyError> {
    let form = super::form::Form::parse_urlencoded(input.headers, input.body)?;
    let mut out = input.url.as_bytes().to_vec();
    for (k, v) in form.sorted()? {
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    Ok(out)
}

/// Adyen's fields, in signing order.
const ADYEN_FIELDS: [&str; 8] = [
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "merchantReference",
    "/amount/value",
    "/amount/currency",
    "eventCode",
    "success",
];

/// The `:`-joined signing string of one `NotificationRequestItem`. The values are joined
/// as they are, unescaped: Adyen's libraries (Python, Node, Go, Java, .NET, Ruby) all sign the
/// standard notification this way; escaping `\\` and `:` belonged to the old HPP signature.
pub fn adyen_signing_string(item: &serde_json::Value) -> String {
    ADYEN_FIELDS
        .iter()
        .map(|f| {
            let v = if f.starts_with('/') { item.pointer(f) } else { item.get(*f) };
            match v {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// The notification items of an Adyen body.
pub fn adyen_items(body: &[u8]) -> Result<Vec<serde_json::Value>, VerifyError> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| VerifyError::Undecodable("JSON"))?;
    let items = doc
        .get("notificationItems")
        .and_then(|i| i.as_array())
        .filter(|i| !i.is_empty())
        .ok_or(VerifyError::MissingSignature("notificationItems".into()))?;
    Ok(items
        .iter()
        .map(|i| i.get("NotificationRequestItem").cloned().unwrap_or(serde_json::Value::Null))
        .collect())
}

/// Adyen: every notification item must carry a valid `additionalData.hmacSignature`.
pub fn adyen(v: &Verifier, input: &Input<'_>) -> Result<Verified, VerifyError> {
    let mut first = None;
    for item in adyen_items(input.body)? {
        let sig = item
            .pointer("/additionalData/hmacSignature")
            .and_then(|s| s.as_str())
            .ok_or(VerifyError::MissingSignature("additionalData.hmacSignature".into()))?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig.trim())
            .ok()
            .filter(|s| s.len() == 32)
            .ok_or(VerifyError::Undecodable("base64"))?;
        let payload = adyen_signing_string(&item);
        let index = v
            .active_keys(input.now)
            .find(|(_, k)| k.matches([payload.as_bytes()], &[&sig]))
            .map(|(i, _)| i)
            .ok_or(VerifyError::Mismatch)?;
        first.get_or_insert(index);
    }
    Ok(Verified { secret_index: first.unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adyen_library_example() {
        // From Adyen's API library test suite (HmacSignatureTest).
        let item = serde_json::json!({
            "pspReference": "7914073381342284",
            "merchantAccountCode": "TestMerchant",
            "merchantReference": "TestPayment-1407325143704",
            "amount": {"value": 1130, "currency": "EUR"},
            "eventCode": "AUTHORISATION",
            "success": "true"
        });
        let s = adyen_signing_string(&item);
        assert_eq!(s, "7914073381342284::TestMerchant:TestPayment-1407325143704:1130:EUR:AUTHORISATION:true");
        let key = hex::decode("DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00").unwrap();
        let mac = super::super::mac::MacKey::new(super::super::mac::Algorithm::HmacSha256, &key);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(mac.digest([s.as_bytes()]).as_bytes()),
            "Ny9gS2veKo5E4w8/OL6xz1/wvT/hYkAXy1xNc/QvO4I="
        );
        // Values are joined unescaped, as Adyen's libraries sign them.
        let odd =
            serde_json::json!({"merchantReference": r"a:b\c", "amount": {"value": 1, "currency": "EUR"}});
        assert_eq!(adyen_signing_string(&odd), r":::a:b\c:1:EUR::");
    }

    #[test]
    fn twilio_documented_example() {
        let body = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, FORM.parse().unwrap());
        let input = Input {
            method: &http::Method::POST,
            url: "https://mycompany.com/myapp.php?foo=1&bar=2",
            headers: &headers,
            body,
            now: 0,
        };
        let payload = twilio(&input).unwrap();
        let mac = super::super::mac::MacKey::new(super::super::mac::Algorithm::HmacSha1, b"12345");
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(mac.digest([payload.as_slice()]).as_bytes()),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn twilio_forms_sign_decoded_bytes_and_refuse_empty_names() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, FORM.parse().unwrap());
        let signed = |body: &'static [u8]| {
            twilio(&Input {
                method: &http::Method::POST,
                url: "https://e/x",
                headers: &headers,
                body,
                now: 0,
            })
        };
        // Repeated names are sorted by value; invalid UTF-8 is signed as the bytes sent, so two
        // bodies differing in it never share a signed string.
        assert_eq!(signed(b"b=2&a=%C3%A9&b=1").unwrap(), "https://e/xa\u{e9}b1b2".as_bytes());
        assert_ne!(signed(b"a=%80").unwrap(), signed(b"a=%81").unwrap());
        assert!(matches!(
            signed(b"a=1&=x"),
            Err(VerifyError::Form(super::super::form::FormError::EmptyName))
        ));
    }
}
