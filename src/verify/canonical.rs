//! The named canonicalisers, for schemes whose signed payload is not a template over the
//! request: Twilio's sorted form parameters and Adyen's per-item field lists.

use super::{Input, Verified, Verifier, VerifyError};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Twilio: the URL, then every form parameter sorted by name (then value), each name followed
/// by its value. When the URL carries `bodySHA256` (JSON bodies), the URL alone is signed and
/// the body must hash to that value.
pub fn twilio(input: &Input<'_>) -> Result<Vec<u8>, VerifyError> {
    let url = input.url;
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let body_hash = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned());
    if let Some(expected) = body_hash {
        let actual = hex::encode(Sha256::digest(input.body));
        if !actual.eq_ignore_ascii_case(&expected) {
            return Err(VerifyError::BodyHash);
        }
        return Ok(url.as_bytes().to_vec());
    }
    let mut params: Vec<(String, String)> =
        form_urlencoded::parse(input.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    params.sort();
    let mut out = url.as_bytes().to_vec();
    for (k, v) in params {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
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

fn adyen_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// The `:`-joined, escaped signing string of one `NotificationRequestItem`.
pub fn adyen_signing_string(item: &serde_json::Value) -> String {
    ADYEN_FIELDS
        .iter()
        .map(|f| {
            let v = if f.starts_with('/') { item.pointer(f) } else { item.get(*f) };
            match v {
                Some(serde_json::Value::String(s)) => adyen_escape(s),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(other) => adyen_escape(&other.to_string()),
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
        assert_eq!(adyen_escape(r"a:b\c"), r"a\:b\\c");
    }

    #[test]
    fn twilio_documented_example() {
        let body = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
        let headers = http::HeaderMap::new();
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
}
