//! Certificate-URL schemes through the real gateway: an HTTPS server the test starts (with a
//! CA it makes) serves the signing certificates; the route trusts that CA and host through
//! its test-only `certificate_test_override`.

use crate::util::{client, config, post, Upstream};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis::clock::Clock;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls;

/// 2026-11-30T08:00:00Z, inside every valid certificate below.
const NOW: u64 = 1_796_025_600;
const WEBHOOK_ID: &str = "1JE4291016473214C";
const TOPIC: &str = "arn:aws:sns:us-west-2:123456789012:MyTopic";
const SIGNER_KEY: &str = include_str!("vectors/cert-fixtures/signer.key.pem");

/// An HTTPS server for `localhost`, serving certificate files by path and counting requests.
struct CertServer {
    port: u16,
    ca_file: std::path::PathBuf,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

/// A certificate for the test's RSA signing key, naming `cn`, valid from `from` to `to` (years).
fn signing_cert(issuer: &Issuer<'_, KeyPair>, cn: &str, from: i32, to: i32) -> String {
    let key = KeyPair::from_pem(SIGNER_KEY).unwrap();
    let mut params = CertificateParams::new(vec![cn.to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(to, 1, 1);
    params.signed_by(&key, issuer).unwrap().pem()
}

impl CertServer {
    async fn start() -> CertServer {
        let (ca_params, ca_key, ca_pem) = ca("portcullis test CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let (other_params, other_key, _) = ca("untrusted CA");
        let other = Issuer::new(other_params, other_key);
        let mut files: HashMap<String, String> = HashMap::new();
        let pp = "/v1/notifications/certs/";
        let paypal = "messageverificationcerts.paypal.com";
        files.insert(format!("{pp}CERT-good"), signing_cert(&issuer, paypal, 2026, 2036));
        files.insert(format!("{pp}CERT-delayed"), signing_cert(&issuer, paypal, 2026, 2036));
        files.insert(format!("{pp}CERT-expired"), signing_cert(&issuer, paypal, 2020, 2021));
        files.insert(format!("{pp}CERT-untrusted"), signing_cert(&other, paypal, 2026, 2036));
        files.insert(
            "/SimpleNotificationService-600d.pem".into(),
            signing_cert(&issuer, "sns.amazonaws.com", 2026, 2036),
        );

        let tls_key = KeyPair::generate().unwrap();
        let tls_cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&tls_key, &issuer)
            .unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![tls_cert.der().clone()],
                    rustls_pki_types::PrivateKeyDer::try_from(tls_key.serialize_der()).unwrap(),
                )
                .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let total = Arc::new(AtomicUsize::new(0));
        let files = Arc::new(files);
        let (h, t) = (hits.clone(), total.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, files, hits, total) = (acceptor.clone(), files.clone(), h.clone(), t.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (files, hits, total) = (files.clone(), hits.clone(), total.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            total.fetch_add(1, Ordering::SeqCst);
                            *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                            if path.ends_with("CERT-delayed") {
                                // Answers late: concurrent requests must share this one fetch.
                                tokio::time::sleep(std::time::Duration::from_millis(400)).await;
                            }
                            if path.ends_with("CERT-slow") {
                                // Never answers: the gateway's fetch timeout must end the wait.
                                std::future::pending::<()>().await;
                            }
                            let res = match files.get(&path) {
                                Some(pem) => http::Response::new(Full::new(Bytes::from(pem.clone()))),
                                None => {
                                    let mut r = http::Response::new(Full::new(Bytes::new()));
                                    *r.status_mut() = StatusCode::NOT_FOUND;
                                    r
                                }
                            };
                            Ok::<_, std::convert::Infallible>(res)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
                });
            }
        });
        let dir = std::env::temp_dir().join(format!("portcullis-certs-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        CertServer { port, ca_file, hits, total }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// The route's test-only override: this server's CA and host.
    fn override_yaml(&self, extra_host: &str) -> String {
        format!(
            "    certificate_test_override:\n      ca_file: {:?}\n      hosts: [\"localhost:{}\"{extra_host}]\n",
            self.ca_file.display().to_string(),
            self.port
        )
    }
}

fn rsa_sign(msg: &[u8]) -> String {
    use base64::Engine;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(SIGNER_KEY.as_bytes()).unwrap();
    let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), msg, &mut sig).unwrap();
    base64::engine::general_purpose::STANDARD.encode(sig)
}

/// PayPal's headers for `body`, per https://developer.paypal.com/api/rest/webhooks/rest/.
fn paypal_headers(tid: &str, body: &[u8], cert_url: &str) -> Vec<(String, String)> {
    let time = "2026-11-30T07:59:50Z";
    let msg = format!("{tid}|{time}|{WEBHOOK_ID}|{}", crc32fast::hash(body));
    [
        ("PAYPAL-TRANSMISSION-ID", tid.to_string()),
        ("PAYPAL-TRANSMISSION-TIME", time.to_string()),
        ("PAYPAL-TRANSMISSION-SIG", rsa_sign(msg.as_bytes())),
        ("PAYPAL-CERT-URL", cert_url.to_string()),
        ("PAYPAL-AUTH-ALGO", "SHA256withRSA".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn gateway(server: &CertServer, upstream: &Upstream, extra_host: &str) -> crate::util::TestGateway {
    let paypal = format!(
        "  - path: /paypal\n    provider: paypal\n    secrets: [{WEBHOOK_ID:?}]\n    upstream: {:?}\n{}",
        upstream.url("/paypal"),
        server.override_yaml(extra_host)
    );
    let sns = format!(
        "  - path: /sns\n    provider: amazon-sns\n    topic_arn: {TOPIC:?}\n    upstream: {:?}\n{}",
        upstream.url("/sns"),
        server.override_yaml("")
    );
    crate::util::TestGateway::start(&config(&[paypal, sns]), Clock::Fixed(NOW)).await
}

#[tokio::test]
async fn paypal_deliveries_verify_with_a_fetched_cached_certificate() {
    let server = CertServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&server, &upstream, "").await;
    let c = client();
    let good = server.url("/v1/notifications/certs/CERT-good");
    let body = br#"{"id":"WH-1","event_type":"PAYMENT.CAPTURE.COMPLETED"}"#;

    let res = post(&c, &gw.url("/paypal"), &paypal_headers("t-1", body, &good), &body[..]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(upstream.count(), 1);
    // Served twice, fetched once.
    let res = post(&c, &gw.url("/paypal"), &paypal_headers("t-2", body, &good), &body[..]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(upstream.count(), 2);
    assert_eq!(server.hits("/v1/notifications/certs/CERT-good"), 1, "the second delivery used the cache");

    // Tampered body: the signature covers its CRC32.
    let res =
        post(&c, &gw.url("/paypal"), &paypal_headers("t-3", body, &good), &br#"{"id":"WH-2"}"#[..]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    // Expired certificate; certificate from a CA nobody trusts.
    for bad in ["CERT-expired", "CERT-untrusted"] {
        let url = server.url(&format!("/v1/notifications/certs/{bad}"));
        let res = post(&c, &gw.url("/paypal"), &paypal_headers("t-4", body, &url), &body[..]).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn a_certificate_url_off_the_pinned_hosts_is_refused_without_fetching() {
    let server = CertServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&server, &upstream, "").await;
    let c = client();
    let body = br#"{"id":"WH-1"}"#;
    // The same server under a name the route does not allow, then a host off PayPal's.
    for url in [
        format!("https://127.0.0.1:{}/v1/notifications/certs/CERT-good", server.port),
        "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-good".to_string(),
        format!("http://localhost:{}/v1/notifications/certs/CERT-good", server.port),
        server.url("/elsewhere/CERT-good"),
    ] {
        let res = post(&c, &gw.url("/paypal"), &paypal_headers("t-1", body, &url), &body[..]).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{url}");
    }
    assert_eq!(server.total.load(Ordering::SeqCst), 0, "nothing was fetched");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn certificate_urls_with_escapes_queries_or_other_file_names_are_refused_without_fetching() {
    let server = CertServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&server, &upstream, "").await;
    let c = client();
    let body = br#"{"id":"WH-1"}"#;
    for path in [
        "/v1/notifications/certs/%2e%2e/%2e%2e/v1/oauth2/token",
        "/v1/notifications/certs/%2E%2E/CERT-good",
        "/v1/notifications/certs/CERT-good?n=1",
        "/v1/notifications/certs/CERT-good?",
        "/v1/notifications/certs/CERT-good#x",
        "/v1/notifications/certs/CERT-%67ood",
        "/v1/notifications/certs/CERT-good/x",
        "/v1/notifications/certs/CERT-good.pem",
        "/v1/notifications/certs/other",
        "/v1/notifications/certs/../../v1/oauth2/token",
    ] {
        let url = server.url(path);
        let res = post(&c, &gw.url("/paypal"), &paypal_headers("t-1", body, &url), &body[..]).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{url}");
    }
    let userinfo = format!("https://u@localhost:{}/v1/notifications/certs/CERT-good", server.port);
    let res = post(&c, &gw.url("/paypal"), &paypal_headers("t-1", body, &userinfo), &body[..]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    for cert_url in [
        server.url("/SimpleNotificationService-good.pem"),
        server.url("/SimpleNotificationService-600d.pem?n=1"),
        server.url("/SimpleNotificationService-%36%30%30d.pem"),
        server.url("/x/SimpleNotificationService-600d.pem"),
    ] {
        let msg = serde_json::json!({"Type": "Notification", "MessageId": "m-1", "Message": "x",
            "Timestamp": "2026-11-30T07:59:50.123Z", "TopicArn": TOPIC, "SignatureVersion": "2",
            "Signature": rsa_sign(b"x"), "SigningCertURL": cert_url});
        let res = post(&c, &gw.url("/sns"), &[], serde_json::to_vec(&msg).unwrap()).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{cert_url}");
    }
    assert_eq!(server.total.load(Ordering::SeqCst), 0, "nothing was fetched");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_failing_certificate_url_is_fetched_once_and_concurrent_misses_share_a_fetch() {
    let server = CertServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&server, &upstream, "").await;
    let c = client();
    let body = br#"{"id":"WH-1"}"#;
    // A URL that fails (404): its failure is remembered, not fetched again per request.
    let missing = server.url("/v1/notifications/certs/CERT-missing");
    for i in 0..5 {
        let res =
            post(&c, &gw.url("/paypal"), &paypal_headers(&format!("t-{i}"), body, &missing), &body[..]).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text());
    }
    assert_eq!(server.hits("/v1/notifications/certs/CERT-missing"), 1, "one fetch within the negative TTL");

    // Concurrent deliveries naming one uncached URL: one fetch, every delivery verified.
    let delayed = server.url("/v1/notifications/certs/CERT-delayed");
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (c, u, d) = (c.clone(), gw.url("/paypal"), delayed.clone());
        tasks.push(tokio::spawn(async move {
            let tid = format!("c-{i}");
            post(&c, &u, &paypal_headers(&tid, body, &d), &body[..]).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(server.hits("/v1/notifications/certs/CERT-delayed"), 1, "concurrent misses share one fetch");
    assert_eq!(upstream.count(), 6);
}

#[tokio::test]
async fn an_unreachable_or_silent_certificate_host_is_503_with_retry_after() {
    let server = CertServer::start().await;
    // A port nothing listens on, allowed by the override.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let upstream = Upstream::start().await;
    let gw = gateway(&server, &upstream, &format!(", \"localhost:{closed}\"")).await;
    let c = client();
    let body = br#"{"id":"WH-1"}"#;
    for url in [
        format!("https://localhost:{closed}/v1/notifications/certs/CERT-good"),
        server.url("/v1/notifications/certs/CERT-slow"),
        server.url("/v1/notifications/certs/CERT-missing"),
    ] {
        let res = post(&c, &gw.url("/paypal"), &paypal_headers("t-1", body, &url), &body[..]).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{url}: {}", res.text());
        assert!(res.headers.contains_key(http::header::RETRY_AFTER), "{url}");
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn sns_messages_of_the_routes_topic_are_forwarded() {
    let server = CertServer::start().await;
    let upstream = Upstream::start().await;
    let gw = gateway(&server, &upstream, "").await;
    let c = client();
    let message = |topic: &str| {
        let fields = [
            ("Message", "{\"order\":\"o_1\"}"),
            ("MessageId", "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"),
            ("Timestamp", "2026-11-30T07:59:50.123Z"),
            ("TopicArn", topic),
            ("Type", "Notification"),
        ];
        // https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
        let signed: String = fields.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect();
        let mut doc: serde_json::Map<String, serde_json::Value> =
            fields.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
        doc.insert("SignatureVersion".into(), "2".into());
        doc.insert("Signature".into(), rsa_sign(signed.as_bytes()).into());
        doc.insert("SigningCertURL".into(), server.url("/SimpleNotificationService-600d.pem").into());
        serde_json::to_vec(&doc).unwrap()
    };
    let res = post(&c, &gw.url("/sns"), &[], message(TOPIC)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(upstream.count(), 1);
    // A retry of the same message is a duplicate (its MessageId is signed).
    let res = post(&c, &gw.url("/sns"), &[], message(TOPIC)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.text().contains("duplicate"), "{}", res.text());
    // Another topic, however well signed, is refused.
    let res = post(&c, &gw.url("/sns"), &[], message("arn:aws:sns:us-west-2:123456789012:Other")).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portcullis_verify_fetches_through_its_test_override() {
    let server = CertServer::start().await;
    let body = br#"{"id":"WH-1"}"#.to_vec();
    let good = server.url("/v1/notifications/certs/CERT-good");
    let dir = server.ca_file.parent().unwrap().to_path_buf();
    let body_file = dir.join("body.json");
    std::fs::write(&body_file, &body).unwrap();
    let run = |headers: Vec<(String, String)>, with_host: bool| {
        let mut args: Vec<String> = ["verify", "--provider", "paypal", "--secret", WEBHOOK_ID, "--now"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(NOW.to_string());
        args.extend(["--body-file".into(), body_file.display().to_string()]);
        args.extend(["--test-ca".into(), server.ca_file.display().to_string()]);
        if with_host {
            args.extend(["--test-cert-host".into(), format!("localhost:{}", server.port)]);
        }
        for (k, v) in headers {
            args.extend(["--header".into(), format!("{k}: {v}")]);
        }
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(crate::util::bin()).args(&args).output().unwrap()
        })
    };
    let out = run(paypal_headers("t-1", &body, &good), true).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.hits("/v1/notifications/certs/CERT-good"), 1);
    // Without the host override, the URL is off PayPal's hosts: refused, nothing fetched.
    let out = run(paypal_headers("t-1", &body, &good), false).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pinned hosts"));
    assert_eq!(server.total.load(Ordering::SeqCst), 1);
}

#[test]
fn topic_arn_and_the_override_are_refused_where_they_do_not_belong() {
    let load = |route: &str| {
        portcullis::config::Config::from_yaml(
            "t.yaml",
            &config(&[route.to_string()]),
            std::path::Path::new("."),
            &|_| None,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let e =
        load("  - path: /s\n    provider: amazon-sns\n    secrets: [x]\n    upstream: http://127.0.0.1:1/\n");
    assert!(e.contains("topic_arn"), "{e}");
    let e = load("  - path: /s\n    provider: paylent\n    secrets: [x]\n    topic_arn: arn:aws:sns:a:1:t\n    upstream: http://127.0.0.1:1/\n");
    assert!(e.contains("only amazon-sns"), "{e}");
    let e = load("  - path: /s\n    provider: paylent\n    secrets: [x]\n    upstream: http://127.0.0.1:1/\n    certificate_test_override: {ca_file: x.pem, hosts: []}\n");
    assert!(e.contains("certificate-URL providers"), "{e}");
    // A route narrows the pinned hosts, never widens them.
    let paypal = "  - path: /s\n    provider: paypal\n    secrets: [WH]\n    upstream: http://127.0.0.1:1/\n";
    let e = load(&format!("{paypal}    certificate_hosts: [api.paypal.com.evil.example]\n"));
    assert!(e.contains("not one of the provider's hosts"), "{e}");
    let yaml = config(&[format!("{paypal}    certificate_hosts: [api.sandbox.paypal.com]\n")]);
    let cfg =
        portcullis::config::Config::from_yaml("t.yaml", &yaml, std::path::Path::new("."), &|_| None).unwrap();
    let rule = cfg.routes[0].verifier.profile().certificate.clone().unwrap();
    assert!(rule.host_allowed("api.sandbox.paypal.com") && !rule.host_allowed("api.paypal.com"));
}
