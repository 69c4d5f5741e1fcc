//! Operations: metrics, readiness, reload, TLS, allowlists, variants, secret files and the
//! one signature every internal service can verify.

use crate::util::process::GatewayProcess;
use crate::util::redis::{redis_or_skip, RedisServer};
use crate::util::*;
use http::{Method, StatusCode};
use portcullis::clock::Clock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = "ops-secret";

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"x","event_id":"{id}"}}"#).into_bytes()
}

async fn deliver(c: &HttpClient, url: &str, id: &str) -> Answer {
    let b = body(id);
    post(c, url, &sign("paylent", SECRET, &b, "", 0), b).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_for_each_outcome() {
    let up = Upstream::start().await;
    let extra = "    max_body: 1KiB\n";
    let yaml = config(&[
        route("/p", "paylent", &[SECRET, "old-secret"], &up.url("/p"), extra),
        route("/slow", "paylent", &[SECRET], &up.url("/slow"), ""),
    ]);
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    assert_eq!(deliver(&c, &gw.url("/p"), "m1").await.status, 200);
    assert_eq!(deliver(&c, &gw.url("/p"), "m1").await.status, 200); // duplicate
    let b = body("m2");
    assert_eq!(post(&c, &gw.url("/p"), &sign("paylent", "old-secret", &b, "", 0), b).await.status, 200);
    let b = body("m3");
    assert_eq!(post(&c, &gw.url("/p"), &sign("paylent", "forged", &b, "", 0), b).await.status, 401);
    assert_eq!(post(&c, &gw.url("/nowhere"), &[], "x").await.status, 404);
    let big = vec![b'x'; 4096];
    assert_eq!(post(&c, &gw.url("/p"), &sign("paylent", SECRET, &big, "", 0), big).await.status, 413);
    up.script(&[500]);
    assert_eq!(deliver(&c, &gw.url("/p"), "m4").await.status, 500);
    // Two copies at once: the first is held at the upstream, so it is in flight when the
    // second arrives.
    up.hold();
    let before = up.count();
    let (u1, u2) = (gw.url("/slow"), gw.url("/slow"));
    let a = tokio::spawn(async move { deliver(&client(), &u1, "m5").await.status });
    wait_until("the first copy to reach the upstream", PATIENCE, || up.count() == before + 1).await;
    assert_eq!(deliver(&c, &u2, "m5").await.status, StatusCode::CONFLICT);
    up.release();
    assert_eq!(a.await.unwrap(), 200);

    let m = gw.metrics().await;
    let count = |route: &str, outcome: &str| {
        sample(&m, &format!("portcullis_requests_total{{route=\"{route}\",outcome=\"{outcome}\"}}"))
    };
    assert_eq!(count("/p", "forwarded"), 2.0, "{m}");
    assert_eq!(count("/p", "duplicate"), 1.0);
    assert_eq!(count("/p", "invalid_signature"), 1.0);
    assert_eq!(count("/p", "too_large"), 1.0);
    assert_eq!(count("/p", "upstream_error"), 1.0);
    assert_eq!(count("-", "not_found"), 1.0);
    assert_eq!(count("/slow", "in_flight"), 1.0);
    assert_eq!(count("/slow", "forwarded"), 1.0);
    assert_eq!(sample(&m, "portcullis_secret_matches_total{route=\"/p\",index=\"1\"}"), 1.0);
    assert_eq!(sample(&m, "portcullis_secret_matches_total{route=\"/p\",index=\"0\"}"), 3.0);
    assert!(sample(&m, "portcullis_request_duration_seconds_count{route=\"/p\"}") == 6.0);
    assert_eq!(sample(&m, "portcullis_upstream_duration_seconds_count{route=\"/p\"}"), 3.0);
    assert_eq!(sample(&m, "portcullis_requests_in_flight"), 0.0);
    assert!(m.contains("# TYPE portcullis_request_duration_seconds histogram"));

    // Store errors, from a gateway whose Redis is not there (nothing listens on port 1, and no
    // test can take it).
    let dead = "redis://127.0.0.1:1/";
    let yaml = format!(
        "listen: 127.0.0.1:0\nstore:\n  kind: redis\n  url: {dead:?}\n  timeout: 300ms\nroutes:\n{}",
        route("/p", "paylent", &[SECRET], &up.url("/p"), "")
    );
    let down = TestGateway::start(&yaml, Clock::System).await;
    assert_eq!(deliver(&c, &down.url("/p"), "m6").await.status, 503);
    let m = down.metrics().await;
    assert_eq!(sample(&m, "portcullis_requests_total{route=\"/p\",outcome=\"store_error\"}"), 1.0, "{m}");
    assert!(sample(&m, "portcullis_store_errors_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_flips_while_redis_is_down() {
    if !redis_or_skip("readyz_flips_while_redis_is_down") {
        return;
    }
    let mut redis = RedisServer::start();
    let up = Upstream::start().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nstore:\n  kind: redis\n  url: {:?}\n  timeout: 500ms\nroutes:\n{}",
        redis.url(),
        route("/p", "paylent", &[SECRET], &up.url("/p"), "")
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let ready = |c: HttpClient, admin| async move {
        send(&c, Method::GET, &format!("http://{admin}/readyz"), &[], "").await.status
    };
    assert_eq!(ready(c.clone(), gw.admin).await, 200);
    assert_eq!(send(&c, Method::GET, &format!("http://{}/healthz", gw.admin), &[], "").await.status, 200);
    redis.kill();
    assert_eq!(ready(c.clone(), gw.admin).await, 503);
    assert_eq!(
        send(&c, Method::GET, &format!("http://{}/healthz", gw.admin), &[], "").await.status,
        200,
        "alive"
    );
    redis.restart();
    let deadline = Deadline::new("ready again without a restart", PATIENCE);
    while ready(c.clone(), gw.admin).await != 200 {
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_route_without_dropping_a_request_and_refuses_a_broken_config() {
    let up = Upstream::start().await;
    let base = "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nroutes:\n";
    let a = route("/a", "paylent", &[SECRET], &up.url("/a"), "");
    let gw = GatewayProcess::start(&format!("{base}{a}"));
    let c = client();
    assert_eq!(deliver(&c, &gw.url("/b"), "b0").await.status, 404);

    // Deliveries keep flowing on one keep-alive client while the configuration changes.
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flow = {
        let (url, failures, sent, stop) = (gw.url("/a"), failures.clone(), sent.clone(), stop.clone());
        tokio::spawn(async move {
            let c = client();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if deliver(&c, &url, &format!("flow{i}")).await.status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait_until("deliveries to flow", PATIENCE, || sent.load(Ordering::Relaxed) >= 5).await;
    let b = route("/b", "paylent", &[SECRET], &up.url("/b"), "");
    std::fs::write(&gw.config, format!("{base}{a}{b}")).unwrap();
    gw.signal("HUP");
    let deadline = Deadline::new("the new route to serve", PATIENCE);
    loop {
        let status = deliver(&c, &gw.url("/b"), "b1").await.status;
        if status == 200 {
            break;
        }
        assert_eq!(status, StatusCode::NOT_FOUND, "before the reload");
        deadline.tick().await;
    }
    let metrics_url = format!("{}/metrics", gw.admin_url());
    let reloads = |result: &'static str| {
        let (c, url) = (c.clone(), metrics_url.clone());
        async move {
            let m = send(&c, Method::GET, &url, &[], "").await.text();
            sample(&m, &format!("portcullis_config_reloads_total{{result=\"{result}\"}}"))
        }
    };

    // A broken configuration is refused; the running one stays.
    std::fs::write(&gw.config, format!("{base}{a}  - path: /c\n    provider: nosuch\n")).unwrap();
    gw.signal("HUP");
    let deadline = Deadline::new("the broken configuration to be refused", PATIENCE);
    while reloads("error").await < 1.0 {
        deadline.tick().await;
    }
    assert_eq!(deliver(&c, &gw.url("/b"), "b2").await.status, 200, "the old configuration still serves");
    let sent_at_refusal = sent.load(Ordering::Relaxed);
    wait_until("deliveries to flow on after the reloads", PATIENCE, || {
        sent.load(Ordering::Relaxed) >= (sent_at_refusal + 5).max(11)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    flow.await.unwrap();
    assert!(sent.load(Ordering::Relaxed) > 10);
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no request failed across the reloads");
    // The file watcher may have put each change in force before the signal came.
    assert!((1.0..=2.0).contains(&reloads("ok").await));
    assert!((1.0..=2.0).contains(&reloads("error").await));
}

#[tokio::test]
async fn forwarded_requests_verify_with_a_standard_webhooks_library() {
    let up = Upstream::start().await;
    let internal = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let extra = format!("    forward_signing:\n      secret: {internal:?}\n");
    let gw = TestGateway::start(
        &config(&[route("/p", "paylent", &[SECRET], &up.url("/p"), &extra)]),
        Clock::System,
    )
    .await;
    let c = client();
    assert_eq!(deliver(&c, &gw.url("/p"), "evt_sw").await.status, 200);
    // Even a client-sent webhook-* header is replaced by the gateway's.
    let b = body("evt_sw2");
    let mut h = sign("paylent", SECRET, &b, "", 0);
    h.push(("webhook-signature".into(), "v1,forged".into()));
    assert_eq!(post(&c, &gw.url("/p"), &h, b).await.status, 200);
    let wh = standardwebhooks::Webhook::new(internal).unwrap();
    for s in up.seen() {
        assert_eq!(s.headers.get_all("webhook-signature").iter().count(), 1);
        wh.verify(&s.body, &s.headers).expect("verifies with the standardwebhooks crate");
        assert_eq!(s.headers["webhook-id"], s.headers["portcullis-idempotency-key"]);
        let mut tampered = s.body.to_vec();
        tampered.push(b' ');
        assert!(wh.verify(&tampered, &s.headers).is_err());
    }
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn allow_ips_believes_x_forwarded_for_only_from_trusted_proxies() {
    let up = Upstream::start().await;
    let direct = route("/direct", "paylent", &[SECRET], &up.url("/d"), "    allow_ips: [10.0.0.0/8]\n");
    let open =
        route("/open", "paylent", &[SECRET], &up.url("/o"), "    allow_ips: [127.0.0.1, 192.0.2.0/24]\n");
    let gw = TestGateway::start(&config(&[direct.clone(), open.clone()]), Clock::System).await;
    let c = client();
    let b = body("ip1");
    let mut h = sign("paylent", SECRET, &b, "", 0);
    assert_eq!(post(&c, &gw.url("/direct"), &h, b.clone()).await.status, 403);
    // Without trusted proxies, X-Forwarded-For is not believed.
    h.push(("X-Forwarded-For".into(), "10.1.2.3".into()));
    assert_eq!(post(&c, &gw.url("/direct"), &h, b.clone()).await.status, 403);
    assert_eq!(post(&c, &gw.url("/open"), &h, b.clone()).await.status, 200);

    let trusting = format!("listen: 127.0.0.1:0\ntrusted_proxies: [127.0.0.0/8]\nroutes:\n{direct}");
    let gw2 = TestGateway::start(&trusting, Clock::System).await;
    let b2 = body("ip2");
    let mut h2 = sign("paylent", SECRET, &b2, "", 0);
    h2.push(("X-Forwarded-For".into(), "10.1.2.3".into()));
    assert_eq!(post(&c, &gw2.url("/direct"), &h2, b2.clone()).await.status, 200);
    // A spoofed first hop before a real, refused client does not help.
    let b3 = body("ip3");
    let mut h3 = sign("paylent", SECRET, &b3, "", 0);
    h3.push(("X-Forwarded-For".into(), "10.1.2.3, 203.0.113.7".into()));
    assert_eq!(post(&c, &gw2.url("/direct"), &h3, b3).await.status, 403);
    let m = gw2.metrics().await;
    assert_eq!(sample(&m, "portcullis_requests_total{route=\"/direct\",outcome=\"forbidden\"}"), 1.0, "{m}");
}

#[tokio::test]
async fn a_header_selects_the_upstream_and_secrets_of_live_and_test_traffic() {
    let live = Upstream::start().await;
    let test = Upstream::start().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /payable\n    provider: payable\n    select_by: X-Live-Mode\n    variants:\n      \"true\": {{secrets: [live-secret], upstream: {:?}}}\n      \"false\": {{secrets: [test-secret], upstream: {:?}}}\n",
        live.url("/live"),
        test.url("/test")
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let payable = |id: &str, secret: &str, mode: Option<&str>| {
        let b = format!(r#"{{"idempotency_key":"{id}","type":"t"}}"#).into_bytes();
        let mut h = sign("payable", secret, &b, "", 0);
        if let Some(m) = mode {
            h.push(("X-Live-Mode".into(), m.into()));
        }
        (h, b)
    };
    let (h, b) = payable("k1", "live-secret", Some("true"));
    assert_eq!(post(&c, &gw.url("/payable"), &h, b).await.status, 200);
    let (h, b) = payable("k2", "test-secret", Some("false"));
    assert_eq!(post(&c, &gw.url("/payable"), &h, b).await.status, 200);
    // A test-mode signature presented as live traffic does not verify.
    let (h, b) = payable("k3", "test-secret", Some("true"));
    assert_eq!(post(&c, &gw.url("/payable"), &h, b).await.status, 401);
    let (h, b) = payable("k4", "live-secret", None);
    assert_eq!(post(&c, &gw.url("/payable"), &h, b).await.status, 400);
    assert_eq!(live.count(), 1);
    assert_eq!(test.count(), 1);
    assert_eq!(live.seen()[0].uri.path(), "/live");
}

#[tokio::test]
async fn secrets_can_come_from_files() {
    let up = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!("portcullis-sf-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("paylent-secret"), "from-a-file\n").unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /p\n    provider: paylent\n    secret_files: [{:?}]\n    upstream: {:?}\n",
        dir.join("paylent-secret").display().to_string(),
        up.url("/p")
    );
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let b = body("sf1");
    assert_eq!(
        post(&client(), &gw.url("/p"), &sign("paylent", "from-a-file", &b, "", 0), b).await.status,
        200
    );
    let _ = std::fs::remove_dir_all(dir);
}

mod tls {
    use super::*;
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls;

    fn write_cert(dir: &std::path::Path, name: &str) -> Vec<u8> {
        let cert =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string(), name.to_string()]).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        cert.cert.der().to_vec()
    }

    /// One request over TLS, trusting only `der`; returns the status and the server's certificate.
    async fn request(addr: std::net::SocketAddr, der: &[u8], id: &str) -> Result<(u16, Vec<u8>), String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(der.to_vec())).unwrap();
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let presented = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let b = body(id);
        let mut req = http::Request::post("/p").header("host", "localhost");
        for (k, v) in sign("paylent", SECRET, &b, "", 0) {
            req = req.header(k, v);
        }
        let res = sender
            .send_request(req.body(http_body_util::Full::new(bytes::Bytes::from(b))).unwrap())
            .await
            .unwrap();
        Ok((res.status().as_u16(), presented))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_listener_serves_tls_and_a_reload_picks_up_a_new_certificate() {
        let up = Upstream::start().await;
        let dir = std::env::temp_dir().join(format!("portcullis-tls-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = write_cert(&dir, "first.example");
        let yaml = format!(
            "listen: 127.0.0.1:0\ntls:\n  cert_file: {:?}\n  key_file: {:?}\nroutes:\n{}",
            dir.join("cert.pem").display().to_string(),
            dir.join("key.pem").display().to_string(),
            route("/p", "paylent", &[SECRET], &up.url("/p"), "")
        );
        let gw = GatewayProcess::start(&yaml);
        let (status, presented) = request(gw.addr, &first, "tls1").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(presented, first);
        assert_eq!(up.seen()[0].headers["x-forwarded-proto"], "https");
        // Plain HTTP on the TLS port gets nowhere.
        let plain = tokio::time::timeout(Duration::from_secs(3), async {
            let c = client();
            let req = http::Request::post(gw.url("/p"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            c.request(req).await.map(|r| r.status().as_u16())
        })
        .await;
        assert!(!matches!(plain, Ok(Ok(200))), "{plain:?}");

        let second = write_cert(&dir, "second.example");
        gw.signal("HUP");
        let deadline = Deadline::new("the reloaded certificate to be served", PATIENCE);
        let mut i = 0;
        let served = loop {
            i += 1;
            if let Ok((200, p)) = request(gw.addr, &second, &format!("tls2-{i}")).await {
                break p;
            }
            deadline.tick().await;
        };
        assert_eq!(served, second, "the reloaded certificate is served");
        let _ = std::fs::remove_dir_all(dir);
    }
}
