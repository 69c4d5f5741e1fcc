//! Handshakes and shared-token schemes end to end, over real sockets: each handshake kind is
//! answered by the gateway (the upstream sees nothing, no key is claimed), a wrong token is
//! refused, and ordinary deliveries still go through.

use crate::util::*;
use base64::Engine;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use portcullis::verify::mac::{Algorithm, MacKey};

fn h(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn get(client: &HttpClient, url: &str, headers: &[(String, String)]) -> Answer {
    send(client, Method::GET, url, headers, "").await
}

fn hmac256(key: &str, data: &[u8]) -> Vec<u8> {
    MacKey::new(Algorithm::HmacSha256, key.as_bytes()).digest([data]).as_bytes().to_vec()
}

fn assert_text(a: &Answer, body: &str) {
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.text(), body);
    assert_eq!(a.headers["content-type"], "text/plain");
    assert_eq!(a.headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn meta_get_challenge_needs_the_verify_token_and_never_reaches_the_upstream() {
    let up = Upstream::start().await;
    let yaml =
        config(&[route("/meta", "meta", &["app-secret"], &up.url("/in"), "    verify_token: vt-123\n")]);
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let base = gw.url("/meta");
    let ok =
        get(&c, &format!("{base}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=vt-123"), &[])
            .await;
    assert_text(&ok, "1158201444");
    let wrong =
        get(&c, &format!("{base}?hub.mode=subscribe&hub.challenge=1&hub.verify_token=vt-12"), &[]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(!wrong.text().contains("vt-"), "{}", wrong.text());
    let missing = get(&c, &format!("{base}?hub.mode=subscribe&hub.challenge=1"), &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    // Any other GET is refused as before.
    assert_eq!(get(&c, &base, &[]).await.status, StatusCode::METHOD_NOT_ALLOWED);
    let other =
        get(&c, &format!("{base}?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=vt-123"), &[]).await;
    assert_eq!(other.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(up.count(), 0, "no handshake reaches the upstream");
    // A signed delivery still goes through; an unsigned one does not.
    let body = br#"{"object":"page","entry":[{"id":"1","time":1}]}"#;
    let sig = format!("sha256={}", hex::encode(hmac256("app-secret", body)));
    let res = post(&c, &base, &h(&[("X-Hub-Signature-256", &sig)]), &body[..]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(post(&c, &base, &[], &body[..]).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn dropbox_twitter_and_okta_get_challenges() {
    let up = Upstream::start().await;
    let yaml = config(&[
        route("/dropbox", "dropbox", &["db-secret"], &up.url("/in"), ""),
        route("/twitter", "twitter", &["consumer-secret", "old-consumer-secret"], &up.url("/in"), ""),
        route("/okta", "okta", &["okta-token"], &up.url("/in"), ""),
    ]);
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    assert_text(&get(&c, &gw.url("/dropbox?challenge=abc%3Cscript%3E"), &[]).await, "abc<script>");
    assert_eq!(get(&c, &gw.url("/dropbox?challenge="), &[]).await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get(&c, &gw.url("/dropbox?other=1"), &[]).await.status, StatusCode::METHOD_NOT_ALLOWED);

    let crc = get(&c, &gw.url("/twitter?crc_token=Zm9vYmFy"), &[]).await;
    assert_eq!(crc.status, StatusCode::OK);
    assert_eq!(crc.headers["content-type"], "application/json");
    let want = base64::engine::general_purpose::STANDARD.encode(hmac256("consumer-secret", b"Zm9vYmFy"));
    let doc: serde_json::Value = serde_json::from_slice(&crc.body).unwrap();
    assert_eq!(doc, serde_json::json!({ "response_token": format!("sha256={want}") }));

    let okta = get(&c, &gw.url("/okta"), &h(&[("x-okta-verification-challenge", "chal\"lenge")])).await;
    assert_eq!(okta.status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_slice(&okta.body).unwrap();
    assert_eq!(doc, serde_json::json!({ "verification": "chal\"lenge" }));
    assert_eq!(get(&c, &gw.url("/okta"), &[]).await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(up.count(), 0, "no handshake reaches the upstream");

    // Okta's events authenticate with the Authorization header's token.
    let body = br#"{"eventId":"e-1","data":{"events":[]}}"#;
    let res = post(&c, &gw.url("/okta"), &h(&[("Authorization", "okta-token")]), &body[..]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let res = post(&c, &gw.url("/okta"), &h(&[("Authorization", "okta-toke")]), &body[..]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), 1);
}

fn twitch_headers(secret: &str, id: &str, kind: &str, body: &[u8]) -> Vec<(String, String)> {
    let ts = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    let mut msg = format!("{id}{ts}").into_bytes();
    msg.extend_from_slice(body);
    let sig = format!("sha256={}", hex::encode(hmac256(secret, &msg)));
    h(&[
        ("Twitch-Eventsub-Message-Id", id),
        ("Twitch-Eventsub-Message-Timestamp", &ts),
        ("Twitch-Eventsub-Message-Signature", &sig),
        ("Twitch-Eventsub-Message-Type", kind),
    ])
}

#[tokio::test]
async fn twitch_verification_is_answered_after_its_signature_and_claims_no_key() {
    let up = Upstream::start().await;
    let yaml = config(&[route("/twitch", "twitch", &["tw-secret"], &up.url("/in"), "")]);
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let url = gw.url("/twitch");
    let body = br#"{"challenge":"pogchamp-kappa","subscription":{"id":"s1","type":"channel.follow"}}"#;
    let kind = "webhook_callback_verification";
    let ok = post(&c, &url, &twitch_headers("tw-secret", "m-1", kind, body), &body[..]).await;
    assert_text(&ok, "pogchamp-kappa");
    // Answered again (no key was claimed), and refused when the signature is wrong.
    assert_text(
        &post(&c, &url, &twitch_headers("tw-secret", "m-1", kind, body), &body[..]).await,
        "pogchamp-kappa",
    );
    let forged = post(&c, &url, &twitch_headers("other", "m-1", kind, body), &body[..]).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), 0);
    // A notification with the same message id is an event, delivered once.
    let ev = br#"{"subscription":{"id":"s1"},"event":{"user_id":"1"}}"#;
    let res = post(&c, &url, &twitch_headers("tw-secret", "m-1", "notification", ev), &ev[..]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn a_signed_post_ping_as_discord_sends_it_is_answered_with_json() {
    let up = Upstream::start().await;
    let dir =
        std::env::temp_dir().join(format!("portcullis-hs-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    // Discord's PING handshake on an HMAC test profile (Discord itself signs with Ed25519).
    std::fs::write(
        dir.join("ping.yaml"),
        "name: ping-test\nsignature: {headers: [X-Sig], algorithm: hmac-sha256, encoding: hex}\n\
         handshake:\n  method: POST\n  when: {json: {/type: 1}}\n  reply: {json: {type: 1}}\n",
    )
    .unwrap();
    let yaml = format!(
        "providers_dir: {:?}\n{}",
        dir.display().to_string(),
        config(&[route("/ping", "ping-test", &["k"], &up.url("/in"), "")])
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let sig = |b: &[u8]| h(&[("X-Sig", &hex::encode(hmac256("k", b)))]);
    let ping = br#"{"type":1,"id":"i","application_id":"a"}"#;
    let res = post(&c, &gw.url("/ping"), &sig(ping), &ping[..]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["content-type"], "application/json");
    assert_eq!(res.text(), r#"{"type":1}"#);
    assert_eq!(
        post(&c, &gw.url("/ping"), &h(&[("X-Sig", &"0".repeat(64))]), &ping[..]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(up.count(), 0);
    let event = br#"{"type":2,"id":"i2"}"#;
    assert_eq!(post(&c, &gw.url("/ping"), &sig(event), &event[..]).await.status, StatusCode::OK);
    assert_eq!(up.count(), 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn token_and_basic_routes_forward_only_the_right_credentials() {
    let up = Upstream::start().await;
    let yaml = config(&[
        route("/gitlab", "gitlab", &["gl-token", "gl-old"], &up.url("/in"), ""),
        route("/postmark", "postmark", &["hooks:pa:ss"], &up.url("/in"), ""),
    ]);
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let body = br#"{"object_kind":"push"}"#;
    for (token, want) in [
        ("gl-token", StatusCode::OK),
        ("gl-old", StatusCode::OK),
        ("gl-toke", StatusCode::UNAUTHORIZED),
        ("gl-tokenn", StatusCode::UNAUTHORIZED),
        ("", StatusCode::UNAUTHORIZED),
    ] {
        let res = post(&c, &gw.url("/gitlab"), &h(&[("X-Gitlab-Token", token)]), &body[..]).await;
        assert_eq!(res.status, want, "{token}: {}", res.text());
    }
    assert_eq!(post(&c, &gw.url("/gitlab"), &[], &body[..]).await.status, StatusCode::UNAUTHORIZED);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let res = post(
        &c,
        &gw.url("/postmark"),
        &h(&[("Authorization", &format!("Basic {}", b64("hooks:pa:ss")))]),
        &body[..],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let res = post(
        &c,
        &gw.url("/postmark"),
        &h(&[("Authorization", &format!("Basic {}", b64("hooks:pa:s")))]),
        &body[..],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    // gitlab: two deliveries with the same body and no Idempotency-Key are one event.
    assert_eq!(up.count(), 2);
}

#[test]
fn verify_token_is_needed_exactly_by_profiles_that_check_one() {
    let load = |provider: &str, extra: &str| {
        let yaml = config(&[route("/r", provider, &["s"], "http://127.0.0.1:9/", extra)]);
        portcullis::config::Config::from_yaml("t.yaml", &yaml, std::path::Path::new("."), &|k| {
            (k == "META_VERIFY_TOKEN").then(|| "from-env".to_string())
        })
    };
    let e = load("meta", "").unwrap_err().to_string();
    assert!(e.contains("verify_token") && e.contains("needs"), "{e}");
    let e = load("dropbox", "    verify_token: x\n").unwrap_err().to_string();
    assert!(e.contains("no handshake that checks one"), "{e}");
    let config = load("meta", "    verify_token: ${META_VERIFY_TOKEN}\n").unwrap();
    let shown = format!("{:?}", config.routes[0]);
    assert!(shown.contains("VerifyToken(<redacted>)") && !shown.contains("from-env"), "{shown}");
    assert!(load("meta", "    verify_token: ''\n").is_err());
}

#[tokio::test]
async fn discords_own_ping_signed_with_ed25519_is_answered_and_a_bad_signature_refused() {
    use ed25519_dalek::Signer;
    let up = Upstream::start().await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    // The public key as Discord's developer portal shows it: 64 hex characters.
    let public = hex::encode(key.verifying_key().as_bytes());
    let gw = TestGateway::start(
        &config(&[route("/discord", "discord", &[&public], &up.url("/in"), "")]),
        Clock::System,
    )
    .await;
    let c = client();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let signed = |body: &[u8]| {
        let mut msg = now.as_bytes().to_vec();
        msg.extend_from_slice(body);
        h(&[
            ("X-Signature-Ed25519", &hex::encode(key.sign(&msg).to_bytes())),
            ("X-Signature-Timestamp", &now),
        ])
    };
    let ping = br#"{"type":1,"id":"123","application_id":"456","version":1}"#;
    let res = post(&c, &gw.url("/discord"), &signed(ping), &ping[..]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.text(), r#"{"type":1}"#);
    // Discord checks that endpoints refuse bad signatures: the PING body, signed by another key.
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let mut msg = now.as_bytes().to_vec();
    msg.extend_from_slice(ping);
    let forged = h(&[
        ("X-Signature-Ed25519", &hex::encode(other.sign(&msg).to_bytes())),
        ("X-Signature-Timestamp", &now),
    ]);
    assert_eq!(post(&c, &gw.url("/discord"), &forged, &ping[..]).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), 0, "a PING never reaches the upstream");
    let command = br#"{"type":2,"id":"789","data":{"name":"hello"}}"#;
    assert_eq!(post(&c, &gw.url("/discord"), &signed(command), &command[..]).await.status, StatusCode::OK);
    assert_eq!(up.count(), 1);
}

/// The `response_token` of a CRC answer, or "" when there is none.
fn response_token(a: &Answer) -> String {
    serde_json::from_slice::<serde_json::Value>(&a.body)
        .ok()
        .and_then(|d| d.get("response_token").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test]
async fn twitters_crc_check_signs_no_body_a_caller_chooses() {
    let up = Upstream::start().await;
    let yaml = config(&[route("/twitter", "twitter", &["consumer-secret"], &up.url("/in"), "")]);
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let url = gw.url("/twitter");
    let crc = |token: &str| {
        let q: String =
            form_urlencoded::Serializer::new(String::new()).append_pair("crc_token", token).finish();
        format!("{url}?{q}")
    };
    // The attack: ask the CRC check for the "signature" of a forged event, then deliver it.
    let forged = r#"{"for_user_id":"2244994945","tweet_create_events":[{"id_str":"1","text":"forged"}]}"#;
    let oracle = get(&c, &crc(forged), &[]).await;
    assert_eq!(oracle.status, StatusCode::FORBIDDEN, "{}", oracle.text());
    let returned = response_token(&oracle);
    assert!(!oracle.text().contains("sha256="), "{}", oracle.text());
    let res = post(&c, &url, &h(&[("x-twitter-webhooks-signature", &returned)]), forged.as_bytes()).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
    // A token-shaped challenge is answered, but a body of that shape is no delivery.
    let answered = get(&c, &crc("Zm9vYmFy"), &[]).await;
    assert_eq!(answered.status, StatusCode::OK);
    let returned = response_token(&answered);
    assert!(returned.starts_with("sha256="), "{}", answered.text());
    let res = post(&c, &url, &h(&[("x-twitter-webhooks-signature", &returned)]), &b"Zm9vYmFy"[..]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
    // A CRC token as X sends it (43 characters of base64url) is answered with its HMAC.
    let token = "x9Qm3-Fh_0aZ7bYc2dEe4fGg6hIi8jKk1lMm5nOo9pP";
    assert_eq!(token.len(), 43);
    let ok = get(&c, &crc(token), &[]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let want = base64::engine::general_purpose::STANDARD.encode(hmac256("consumer-secret", token.as_bytes()));
    assert_eq!(response_token(&ok), format!("sha256={want}"));
    // Over-long tokens are refused too; nothing reached the upstream.
    assert_eq!(get(&c, &crc(&"A".repeat(257)), &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(up.count(), 0, "no forged event reaches the upstream");
    // X's real deliveries (JSON, signed by X) still go through.
    let body = br#"{"for_user_id":"2244994945","tweet_create_events":[{"id_str":"2","text":"hi"}]}"#;
    let sig = format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(hmac256("consumer-secret", body))
    );
    let res = post(&c, &url, &h(&[("x-twitter-webhooks-signature", &sig)]), &body[..]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn nylas_challenge_is_echoed_as_plain_text_and_deliveries_still_verify() {
    let up = Upstream::start().await;
    let yaml = config(&[route("/nylas", "nylas", &["nyl-webhook-secret"], &up.url("/in"), "")]);
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let url = gw.url("/nylas");
    assert_text(
        &get(&c, &format!("{url}?challenge=bc609b38-c81f-47fb-a275-1d9bd61a968b"), &[]).await,
        "bc609b38-c81f-47fb-a275-1d9bd61a968b",
    );
    assert_eq!(get(&c, &format!("{url}?challenge="), &[]).await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get(&c, &url, &[]).await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(up.count(), 0, "the challenge never reaches the upstream");
    let body = br#"{"specversion":"1.0","type":"message.created","source":"/google/emails/realtime","id":"n-1","time":1,"webhook_delivery_attempt":1,"data":{"application_id":"a","object":{"id":"m"}}}"#;
    let sig = hex::encode(hmac256("nyl-webhook-secret", body));
    let res = post(&c, &url, &h(&[("X-Nylas-Signature", &sig)]), &body[..]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let res =
        post(&c, &url, &h(&[("X-Nylas-Signature", &hex::encode(hmac256("other", body)))]), &body[..]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn head_url_checks_and_lushas_get_challenge_are_answered_without_reaching_the_upstream() {
    let up = Upstream::start().await;
    let yaml = config(&[
        route(
            "/trello",
            "trello",
            &["trello-secret"],
            &up.url("/in"),
            "    public_url: https://hooks.example.com/trello\n",
        ),
        route(
            "/mandrill",
            "mandrill",
            &["mandrill-key"],
            &up.url("/in"),
            "    public_url: https://hooks.example.com/mandrill\n",
        ),
        route("/lusha", "lusha", &["lusha-secret"], &up.url("/in"), ""),
        route("/github", "github", &["gh-secret"], &up.url("/in"), ""),
    ]);
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    // Trello creates a webhook only when its HEAD gets a 200; Mandrill checks the same way.
    for path in ["/trello", "/mandrill"] {
        let res = send(&c, Method::HEAD, &gw.url(path), &[], "").await;
        assert_eq!(res.status, StatusCode::OK, "{path}");
        assert!(res.body.is_empty(), "{path}");
        // Only HEAD: an unsigned GET is still refused.
        assert_eq!(get(&c, &gw.url(path), &[]).await.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
    // A profile without a HEAD check still refuses HEAD.
    assert_eq!(
        send(&c, Method::HEAD, &gw.url("/github"), &[], "").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // Lusha: GET ?challenge=C → {"challenge": C}.
    let res = get(&c, &gw.url("/lusha?challenge=abc123"), &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let doc: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(doc, serde_json::json!({ "challenge": "abc123" }));
    assert_eq!(up.count(), 0, "no URL check reaches the upstream");
    // Deliveries still need their signature.
    let body = br#"{"id":"f3b87e05-0402-4f3e-8e26-6a38fd0ad62c","type":"contact.updated"}"#;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let mut signed = now.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(body);
    let sig = hex::encode(hmac256("lusha-secret", &signed));
    let headers = h(&[("X-Lusha-Signature", &sig), ("X-Lusha-Timestamp", &now)]);
    assert_eq!(post(&c, &gw.url("/lusha"), &headers, &body[..]).await.status, StatusCode::OK);
    let forged = h(&[("X-Lusha-Signature", &"0".repeat(64)), ("X-Lusha-Timestamp", &now)]);
    assert_eq!(post(&c, &gw.url("/lusha"), &forged, &body[..]).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), 1);
}
