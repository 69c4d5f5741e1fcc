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
