//! Form-signed schemes at the gateway: Mailgun Routes' token is read from the form the
//! Content-Type names, remembered, and a form naming a signed field twice is ambiguous.

use super::App;
use crate::util::*;
use http::StatusCode;
use portcullis::clock::Clock;

fn routes_form(key: &[u8], token: &str, subject: &str) -> Vec<u8> {
    let ts = now().to_string();
    let mac = portcullis::verify::mac::MacKey::new(portcullis::verify::mac::Algorithm::HmacSha256, key);
    let sig = hex::encode(mac.digest([ts.as_bytes(), token.as_bytes()]).as_bytes());
    format!("recipient=in%40example.com&subject={subject}&timestamp={ts}&token={token}&signature={sig}")
        .into_bytes()
}

fn form_headers() -> Vec<(String, String)> {
    vec![("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string())]
}

#[tokio::test]
async fn mailgun_routes_tokens_are_remembered_and_doubled_fields_refused() {
    let up = Upstream::start().await;
    let gw =
        App::start(&config(&[route("/in", "mailgun-routes", &["mg-key"], &up.url("/i"), "")]), Clock::System)
            .await;
    let first = routes_form(b"mg-key", "tok_1", "Hello");
    assert_eq!(gw.post("/in", &form_headers(), first).await.status, StatusCode::OK);
    // The same signature block on another message: a replay of the token, refused.
    let forged = routes_form(b"mg-key", "tok_1", "Forged");
    assert_eq!(gw.post("/in", &form_headers(), forged).await.status, StatusCode::UNAUTHORIZED);
    // Another key's signature is refused outright.
    let other = routes_form(b"other-key", "tok_2", "Hello");
    assert_eq!(gw.post("/in", &form_headers(), other).await.status, StatusCode::UNAUTHORIZED);
    // A token given twice could be read as either by the upstream: ambiguous.
    let mut doubled = routes_form(b"mg-key", "tok_3", "Hello");
    doubled.extend_from_slice(b"&token=tok_4");
    assert_eq!(gw.post("/in", &form_headers(), doubled).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(up.count(), 1);
}

/// Mandrill signs the URL and the decoded, sorted fields: base64 HMAC-SHA1.
fn mandrill_headers(key: &[u8], url: &str, fields: &[(&str, &str)]) -> Vec<(String, String)> {
    use base64::Engine;
    let mut sorted = fields.to_vec();
    sorted.sort();
    let mut signed = url.to_string();
    for (k, v) in sorted {
        signed.push_str(k);
        signed.push_str(v);
    }
    let mac = portcullis::verify::mac::MacKey::new(portcullis::verify::mac::Algorithm::HmacSha1, key);
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.digest([signed.as_bytes()]).as_bytes());
    let mut h = form_headers();
    h.push(("X-Mandrill-Signature".to_string(), sig));
    h
}

#[tokio::test]
async fn every_re_encoding_of_a_mandrill_delivery_is_a_duplicate() {
    let up = Upstream::start().await;
    let url = "https://hooks.example.com/mandrill";
    let extra = format!("    public_url: {url}\n");
    let gw =
        App::start(&config(&[route("/m", "mandrill", &["mk"], &up.url("/m"), &extra)]), Clock::System).await;
    let events = r#"[{"event":"send","_id":"m1"}]"#;
    let h = mandrill_headers(b"mk", url, &[("mandrill_events", events)]);
    let body = b"mandrill_events=%5B%7B%22event%22%3A%22send%22%2C%22_id%22%3A%22m1%22%7D%5D".to_vec();
    let first = gw.post("/m", &h, body).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_ne!(first.text(), r#"{"status":"duplicate"}"#);
    // Each re-encoding keeps the signature valid; each is the same event, not forwarded again.
    let reencoded: [&[u8]; 5] = [
        b"mandrill_events=%5b%7b%22event%22%3a%22send%22%2c%22_id%22%3a%22m1%22%7d%5d",
        br#"mandrill_events=[{"event":"send","_id":"m1"}]"#,
        b"mandrill_events=%5B%7B%22event%22%3A%22send%22%2C%22_id%22%3A%22m1%22%7D%5D&",
        b"&mandrill_%65vents=%5B%7B%22event%22%3A%22send%22%2C%22_id%22%3A%22m1%22%7D%5D&&",
        br#"mandrill_events=%5B{"event":"send","_id":"m1"}%5D"#,
    ];
    for body in reencoded {
        let res = gw.post("/m", &h, body.to_vec()).await;
        assert_eq!(res.status, StatusCode::OK, "{}", String::from_utf8_lossy(body));
        assert_eq!(res.text(), r#"{"status":"duplicate"}"#, "{}", String::from_utf8_lossy(body));
    }
    // The same fields as multipart, where a part could be an unsigned file: refused.
    let mut mp = h.clone();
    mp[0].1 = "multipart/form-data; boundary=B".to_string();
    let multipart = format!(
        "--B\r\nContent-Disposition: form-data; name=\"mandrill_events\"\r\n\r\n{events}\r\n--B--\r\n"
    );
    assert_eq!(gw.post("/m", &mp, multipart.into_bytes()).await.status, StatusCode::UNAUTHORIZED);
    // A field with an empty name signs only its value: refused, not forwarded.
    let h2 = mandrill_headers(b"mk", url, &[("", "x"), ("mandrill_events", "[]")]);
    assert_eq!(
        gw.post("/m", &h2, b"mandrill_events=%5B%5D&=x".to_vec()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn braintree_refuses_unsigned_file_parts() {
    let up = Upstream::start().await;
    // The route secret is the hex SHA-1 of the private key; the HMAC key is its bytes.
    let secret = "00112233445566778899aabbccddeeff00112233";
    let gw =
        App::start(&config(&[route("/bt", "braintree", &[secret], &up.url("/b"), "")]), Clock::System).await;
    let key = hex::decode(secret).unwrap();
    let payload = "PG5vdGlmaWNhdGlvbi8+";
    let mac = portcullis::verify::mac::MacKey::new(portcullis::verify::mac::Algorithm::HmacSha1, &key);
    let sig = hex::encode(mac.digest([payload.as_bytes()]).as_bytes());
    let part = |name: &str, extra: &str, v: &str| {
        format!("--B\r\nContent-Disposition: form-data; name=\"{name}\"{extra}\r\n\r\n{v}\r\n")
    };
    let signed = part("bt_signature", "", &format!("pk|{sig}")) + &part("bt_payload", "", payload);
    let h = vec![("Content-Type".to_string(), "multipart/form-data; boundary=B".to_string())];
    let with_file = signed.clone() + &part("evil", "; filename=\"x.bin\"", "UNSIGNED") + "--B--\r\n";
    assert_eq!(gw.post("/bt", &h, with_file.into_bytes()).await.status, StatusCode::UNAUTHORIZED);
    let ext = signed.clone() + &part("a", "; name*=UTF-8''b", "v") + "--B--\r\n";
    assert_eq!(gw.post("/bt", &h, ext.into_bytes()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.post("/bt", &h, (signed + "--B--\r\n").into_bytes()).await.status, StatusCode::OK);
    // The same bt_payload, url-encoded with another signature list: the same event.
    let u = format!("bt_payload={}&bt_signature=old%7C00%26pk%7C{sig}", payload.replace('+', "%2B"));
    let res = gw.post("/bt", &form_headers(), u.into_bytes()).await;
    assert_eq!(res.text(), r#"{"status":"duplicate"}"#);
    assert_eq!(up.count(), 1);
}
