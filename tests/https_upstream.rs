//! HTTPS upstreams (issue 17): a private CA trusted instead of the system's roots, mTLS, a
//! server name override, load errors naming their field, against a local TLS server with
//! certificates the test makes (rcgen).

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis::config::Limits;
use portcullis::forward;
use portcullis::forward::UpstreamClient;
use portcullis::upstream_tls::{client, ClientOptions, HttpsClient, TlsFiles, UpstreamTls};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::rustls;

/// A certificate authority the test made: its PEM and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { pem, issuer: Issuer::new(params, key) }
    }

    /// A leaf for `names` (DNS names or IP addresses): its certificate PEM and key PEM.
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            })
            .collect();
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

fn der_chain(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().unwrap()
}

fn der_key(pem: &str) -> PrivateKeyDer<'static> {
    use rustls_pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// What the TLS server received: one request, with the connection's SNI and ALPN.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    client_cert: bool,
}

/// A local server answering 200 `ok` and recording what it received: HTTPS with a
/// certificate that can be replaced while it runs (a rotation), or plain HTTP (`None`).
/// Without keep-alive every answer closes the connection, so each request is a new
/// handshake with the server's current certificate.
struct TlsServer {
    addr: SocketAddr,
    config: Arc<Mutex<Option<Arc<rustls::ServerConfig>>>>,
    received: Arc<Mutex<Vec<Received>>>,
    /// Handshakes the server refused, with rustls' reason.
    refused: Arc<Mutex<Vec<String>>>,
    /// Connections accepted (TLS: handshakes begun).
    connections: Arc<AtomicUsize>,
}

fn server_config(cert: &str, key: &str, client_ca: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(der_chain(&ca.pem).remove(0)).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(der_chain(cert), der_key(key)).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A connection as the server sees it, TLS or not.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

impl TlsServer {
    async fn start(config: Arc<rustls::ServerConfig>) -> TlsServer {
        Self::start_with(Some(config), false).await
    }

    async fn start_with(config: Option<Arc<rustls::ServerConfig>>, keep_alive: bool) -> TlsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Arc::new(Mutex::new(config));
        let received = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (cfg, rec, refu, conns) =
            (config.clone(), received.clone(), refused.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                let acceptor = cfg.lock().unwrap().clone().map(tokio_rustls::TlsAcceptor::from);
                let (rec, refu) = (rec.clone(), refu.clone());
                tokio::spawn(async move {
                    let (stream, sni, alpn, client_cert): (Box<dyn Stream>, _, _, _) = match acceptor {
                        None => (Box::new(tcp), None, None, false),
                        Some(acceptor) => {
                            let tls = match acceptor.accept(tcp).await {
                                Ok(tls) => tls,
                                Err(e) => return refu.lock().unwrap().push(e.to_string()),
                            };
                            let conn = tls.get_ref().1;
                            let sni = conn.server_name().map(str::to_string);
                            let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
                            let client_cert = conn.peer_certificates().is_some_and(|c| !c.is_empty());
                            (Box::new(tls), sni, alpn, client_cert)
                        }
                    };
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (rec, sni, alpn) = (rec.clone(), sni.clone(), alpn.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            rec.lock().unwrap().push(Received {
                                path: parts.uri.path().to_string(),
                                headers: parts.headers,
                                body,
                                sni,
                                alpn,
                                client_cert,
                            });
                            Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TlsServer { addr, config, received, refused, connections }
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.config.lock().unwrap().is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    fn rotate(&self, config: Arc<rustls::ServerConfig>) {
        *self.config.lock().unwrap() = Some(config);
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// The certificates of one test, written as PEM files in a directory of its own.
struct Pki {
    dir: PathBuf,
    ca: Ca,
    client_ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-https-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir, ca: Ca::new("upstream test CA"), client_ca: Ca::new("client test CA") };
        pki.write("ca.pem", &pki.ca.pem);
        pki.write("other-ca.pem", &Ca::new("someone else's CA").pem);
        let (cert, key) = pki.client_ca.leaf(&["portcullis.client"]);
        pki.write("client.pem", &cert);
        pki.write("client.key", &key);
        let (_, other_key) = pki.client_ca.leaf(&["another.client"]);
        pki.write("other.key", &other_key);
        pki.write("junk.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n");
        pki
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A server for 127.0.0.1 and `backend.internal`, signed by the test's CA.
    fn server(&self, mtls: bool) -> Arc<rustls::ServerConfig> {
        let (cert, key) = self.ca.leaf(&["127.0.0.1", "backend.internal"]);
        server_config(&cert, &key, mtls.then_some(&self.client_ca))
    }
}

fn load(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
    name: Option<&str>,
) -> Result<UpstreamTls, String> {
    UpstreamTls::load(&TlsFiles {
        ca_file: ca,
        client_cert_file: cert,
        client_key_file: key,
        server_name: name,
    })
}

const OPTS: ClientOptions = ClientOptions { connect_timeout: Duration::from_secs(5), max_idle_per_host: 4 };

/// A route to give `forward::send` its timeout.
fn route() -> Arc<portcullis::config::Route> {
    let yaml = crate::util::config(&[crate::util::route("/p", "paylent", &["s"], "http://127.0.0.1:1/", "")]);
    let cfg = portcullis::config::Config::from_yaml("t.yaml", &yaml, Path::new("."), &|_| None).unwrap();
    cfg.routes[0].clone()
}

/// POSTs `body` to `url` through `client` with `forward::send`: the status, or the reason.
async fn post(client: &HttpsClient, url: &str, body: &'static [u8]) -> Result<StatusCode, String> {
    post_via(&forward::client(&Limits::default()), Some(client), url, body).await
}

/// The same through the gateway's upstream client: `http://` on its pool, `https://` with
/// `tls` or its own.
async fn post_via(
    upstreams: &UpstreamClient,
    tls: Option<&HttpsClient>,
    url: &str,
    body: &'static [u8],
) -> Result<StatusCode, String> {
    let req = Request::post(url).header("x-test", "1").body(Full::new(Bytes::from_static(body))).unwrap();
    match forward::send(upstreams, tls, &route(), req).await {
        Ok(res) => {
            let status = res.status();
            // Read to the end, so the connection goes back to the pool.
            res.into_body().collect().await.map_err(|e| e.to_string())?;
            Ok(status)
        }
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn a_private_ca_is_trusted_and_another_is_refused() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server(false)).await;
    let tls = load(Some(&pki.path("ca.pem")), None, None, None).unwrap();
    assert_eq!(post(tls.client(&OPTS), &server.url("/hook?x=1"), b"{\"a\":1}").await, Ok(StatusCode::OK));
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hook");
    assert_eq!(&got[0].body[..], b"{\"a\":1}");
    assert_eq!(got[0].headers["x-test"], "1");
    assert_eq!(got[0].alpn.as_deref(), Some(&b"http/1.1"[..]), "ALPN http/1.1");
    assert_eq!(got[0].sni, None, "no SNI for an IP address");

    // Another CA: refused, and the reason is rustls' own.
    let wrong = load(Some(&pki.path("other-ca.pem")), None, None, None).unwrap();
    let e = post(wrong.client(&OPTS), &server.url("/hook"), b"x").await.unwrap_err();
    assert!(e.contains("TLS: invalid peer certificate: UnknownIssuer"), "{e}");
    // The system's roots do not know the private CA either.
    let e = post(&client(None, &OPTS), &server.url("/hook"), b"x").await.unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert_eq!(server.received().len(), 1, "nothing reached the server past a refused handshake");
}

#[tokio::test]
async fn a_server_name_is_verified_and_sent_instead_of_the_host() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server(false)).await;
    let named = load(Some(&pki.path("ca.pem")), None, None, Some("backend.internal")).unwrap();
    assert_eq!(named.server_name.as_deref(), Some("backend.internal"));
    assert_eq!(post(named.client(&OPTS), &server.url("/n"), b"n").await, Ok(StatusCode::OK));
    assert_eq!(server.received()[0].sni.as_deref(), Some("backend.internal"));
    // A name the certificate does not hold: refused.
    let other = load(Some(&pki.path("ca.pem")), None, None, Some("frontend.internal")).unwrap();
    let e = post(other.client(&OPTS), &server.url("/n"), b"n").await.unwrap_err();
    assert!(e.contains("TLS: invalid peer certificate: certificate not valid for name"), "{e}");
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn mtls_needs_the_client_certificate() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server(true)).await;
    let ca = pki.path("ca.pem");
    let without = load(Some(&ca), None, None, None).unwrap();
    let e = post(without.client(&OPTS), &server.url("/m"), b"m").await.unwrap_err();
    // TLS 1.3: the client's handshake ends before the server's verdict, which arrives as an
    // alert when the answer is read ("received fatal alert: CertificateRequired"); a server
    // that closes at once may reset the connection first, so the alert is not always read.
    assert!(
        e.starts_with("upstream unreachable")
            && (e.contains("TLS: received fatal alert: CertificateRequired")
                || e.contains("reset")
                || e.contains("closed")),
        "{e}"
    );
    assert!(server.received().is_empty());
    let refused = server.refused.lock().unwrap().clone();
    assert!(refused.iter().any(|r| r.contains("peer sent no certificates")), "{refused:?}");

    let with = load(Some(&ca), Some(&pki.path("client.pem")), Some(&pki.path("client.key")), None).unwrap();
    assert_eq!(post(with.client(&OPTS), &server.url("/m"), b"m").await, Ok(StatusCode::OK));
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].client_cert);
}

#[tokio::test]
async fn a_rotated_certificate_is_trusted_once_its_ca_is_loaded_again() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server(false)).await;
    let ca_file = pki.path("ca.pem");
    let before = load(Some(&ca_file), None, None, None).unwrap();
    assert_eq!(post(before.client(&OPTS), &server.url("/r"), b"1").await, Ok(StatusCode::OK));
    // The server's certificate now comes from a new CA; the old settings refuse it.
    let new_ca = Ca::new("rotated test CA");
    let (cert, key) = new_ca.leaf(&["127.0.0.1"]);
    server.rotate(server_config(&cert, &key, None));
    let e = post(before.client(&OPTS), &server.url("/r"), b"2").await.unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // The new CA written to the same file and loaded again (what a reload does).
    pki.write("ca.pem", &new_ca.pem);
    let after = load(Some(&ca_file), None, None, None).unwrap();
    assert_eq!(post(after.client(&OPTS), &server.url("/r"), b"3").await, Ok(StatusCode::OK));
    let bodies: Vec<Bytes> = server.received().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, [Bytes::from_static(b"1"), Bytes::from_static(b"3")]);
}

/// `http://` and `https://` through one upstream client, each kept alive in its pool: a
/// connection (a handshake) serves several deliveries. An HTTPS connection goes back to the
/// pool a moment after its answer (a task of the client's), so a delivery may rarely open a
/// second one: at most two for five deliveries; a plain one is reused once its answer is
/// read.
#[tokio::test]
async fn both_schemes_share_one_client_and_reuse_pooled_connections() {
    let pki = Pki::new();
    let tls = load(Some(&pki.path("ca.pem")), None, None, None).unwrap();
    let secure = TlsServer::start_with(Some(pki.server(false)), true).await;
    let plain = TlsServer::start_with(None, true).await;
    let c = tls.client(&OPTS);
    let upstreams = forward::client(&Limits::default());
    for i in 0..5 {
        assert_eq!(
            post_via(&upstreams, Some(c), &secure.url("/s"), b"s").await,
            Ok(StatusCode::OK),
            "https #{i}"
        );
        assert_eq!(
            post_via(&upstreams, Some(c), &plain.url("/p"), b"p").await,
            Ok(StatusCode::OK),
            "http #{i}"
        );
    }
    assert_eq!((secure.received().len(), plain.received().len()), (5, 5));
    let (tls_conns, plain_conns) =
        (secure.connections.load(Ordering::SeqCst), plain.connections.load(Ordering::SeqCst));
    assert!(tls_conns <= 2, "TLS connections reused: {tls_conns} for 5 deliveries");
    assert!(plain_conns <= 2, "plain connections reused: {plain_conns} for 5 deliveries");
    assert_eq!(plain.received()[0].alpn, None);
    // Without a route's TLS client, plain upstreams are reached the same way.
    assert_eq!(post_via(&upstreams, None, &plain.url("/p"), b"p").await, Ok(StatusCode::OK));
    assert_eq!(plain.received().len(), 6);
    assert!(plain.connections.load(Ordering::SeqCst) <= 2);
}

#[test]
fn load_errors_name_the_field() {
    let pki = Pki::new();
    let (ca, cert, key) = (pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"));
    let missing = pki.path("missing.pem");
    let err = |r: Result<UpstreamTls, String>| r.map(|_| ()).unwrap_err();

    let e = err(load(Some(&missing), None, None, None));
    assert!(e.starts_with("ca_file") && e.contains("missing.pem"), "{e}");
    let e = err(load(Some(&pki.path("junk.pem")), None, None, None));
    assert!(e.starts_with("ca_file") && e.contains("junk.pem"), "{e}");
    // A file with no PEM certificate in it (a key) is no CA.
    let e = err(load(Some(&key), None, None, None));
    assert!(e.starts_with("ca_file") && e.contains("no PEM certificate"), "{e}");
    let e = err(load(Some(&ca), Some(&missing), Some(&key), None));
    assert!(e.starts_with("client_cert_file"), "{e}");
    let e = err(load(Some(&ca), Some(&pki.path("junk.pem")), Some(&key), None));
    assert!(e.starts_with("client_cert_file"), "{e}");
    let e = err(load(Some(&ca), Some(&cert), Some(&missing), None));
    assert!(e.starts_with("client_key_file"), "{e}");
    let e = err(load(Some(&ca), Some(&cert), Some(&pki.path("junk.pem")), None));
    assert!(e.starts_with("client_key_file"), "{e}");
    // The key of another certificate.
    let e = err(load(Some(&ca), Some(&cert), Some(&pki.path("other.key")), None));
    assert!(e.starts_with("client_key_file") && e.contains("not the key of"), "{e}");
    // A certificate without its key, and a key without its certificate.
    let e = err(load(Some(&ca), Some(&cert), None, None));
    assert!(e.starts_with("client_key_file"), "{e}");
    let e = err(load(Some(&ca), None, Some(&key), None));
    assert!(e.starts_with("client_cert_file"), "{e}");
    // No error shows the key.
    let other_key = std::fs::read_to_string(pki.path("other.key")).unwrap();
    let e = err(load(Some(&ca), Some(&cert), Some(&pki.path("other.key")), None));
    assert!(!e.contains(other_key.lines().nth(1).unwrap()), "{e}");

    let ok = load(Some(&ca), Some(&cert), Some(&key), Some("backend.internal")).unwrap();
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(!format!("{ok:?}").contains(key_text.lines().nth(1).unwrap()), "Debug shows no key material");
}

const SECRET: &str = "whsec_https_upstream_0123456789";

/// The `upstream_tls:` block of a route, every file absolute.
fn tls_block(ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "    upstream_tls:\n      ca_file: {:?}\n      client_cert_file: {:?}\n      client_key_file: {:?}\n",
        ca.display().to_string(),
        cert.display().to_string(),
        key.display().to_string()
    )
}

/// A signed Paylent delivery of `body` to the gateway: the status answered.
async fn deliver(c: &crate::util::HttpClient, url: &str, body: &[u8]) -> StatusCode {
    crate::util::post(c, url, &crate::util::sign("paylent", SECRET, body, "", 0), body.to_vec()).await.status
}

/// The reason the gateway recorded for its latest answer on `route` with `status` (the log
/// line's own text), read from the admin API.
async fn reason(gw: &crate::util::TestGateway, route: &str, status: u16) -> String {
    let url = format!("http://{}/api/deliveries", gw.admin);
    let deadline =
        crate::util::Deadline::new(format!("a {status} on {route} in the event log"), crate::util::PATIENCE);
    loop {
        let a = crate::util::send(&crate::util::client(), http::Method::GET, &url, &[], "").await;
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
        let found = v["deliveries"].as_array().and_then(|all| {
            all.iter().find(|d| d["route"] == route && d["status"] == status).map(|d| d["detail"].to_string())
        });
        if let Some(detail) = found {
            return detail;
        }
        deadline.tick().await;
    }
}

/// Issue 17's "done when", through the whole gateway: a delivery reaches an mTLS upstream of
/// a private CA byte for byte; a route trusting another CA answers 502 and records why; a
/// server certificate from a new CA is trusted once the CA file is rewritten and reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_delivers_over_mtls_refuses_a_wrong_ca_and_reloads_a_rotated_one() {
    use portcullis::clock::Clock;
    let pki = Pki::new();
    let server = TlsServer::start(pki.server(true)).await;
    let (ca, cert, key) = (pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"));
    let yaml = crate::util::config(&[
        crate::util::route("/good", "paylent", &[SECRET], &server.url("/hook"), &tls_block(&ca, &cert, &key)),
        crate::util::route(
            "/wrong",
            "paylent",
            &[SECRET],
            &server.url("/hook"),
            &tls_block(&pki.path("other-ca.pem"), &cert, &key),
        ),
    ]);
    let file = pki.write("gateway.yaml", &yaml);
    let gw = crate::util::TestGateway::start(&yaml, Clock::System).await;
    let c = crate::util::client();

    // Byte-identical over TLS, with the client certificate.
    let body =
        "{\"event\":\"x\",\"event_id\":\"evt_tls_1\",\"note\":\"caf\u{e9} \\u00e9\\n\"}\r\n".as_bytes();
    assert_eq!(deliver(&c, &gw.url("/good"), body).await, StatusCode::OK);
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], body);
    assert!(got[0].client_cert, "mTLS");
    assert_eq!(got[0].headers["portcullis-provider"], "paylent");

    // Another CA: 502, and the reason is the unknown issuer.
    assert_eq!(
        deliver(&c, &gw.url("/wrong"), b"{\"event_id\":\"evt_tls_2\"}").await,
        StatusCode::BAD_GATEWAY
    );
    let why = reason(&gw, "/wrong", 502).await;
    assert!(why.contains("TLS: invalid peer certificate: UnknownIssuer"), "{why}");
    assert!(!why.contains(std::fs::read_to_string(&key).unwrap().lines().nth(1).unwrap()));
    assert_eq!(server.received().len(), 1);

    // The server's certificate rotates to a new CA: refused until the gateway trusts it.
    let new_ca = Ca::new("rotated upstream CA");
    let (new_cert, new_key) = new_ca.leaf(&["127.0.0.1"]);
    server.rotate(server_config(&new_cert, &new_key, Some(&pki.client_ca)));
    assert_eq!(deliver(&c, &gw.url("/good"), b"{\"event_id\":\"evt_tls_3\"}").await, StatusCode::BAD_GATEWAY);
    let reloader = portcullis::reload::Reloader::new(file, &gw.gateway, None);
    assert!(reloader.watched_files().contains(&ca), "the CA file is watched: {:?}", reloader.watched_files());
    pki.write("ca.pem", &new_ca.pem);
    assert!(reloader.files_changed(), "a new CA is a change to reload");
    reloader.reload("test").await.unwrap();
    assert_eq!(deliver(&c, &gw.url("/good"), b"{\"event_id\":\"evt_tls_4\"}").await, StatusCode::OK);
    let bodies: Vec<Bytes> = server.received().into_iter().map(|r| r.body).collect();
    assert_eq!(bodies.last().unwrap(), &b"{\"event_id\":\"evt_tls_4\"}"[..]);
    assert_eq!(bodies.len(), 2);
}

/// Through the configuration: a load error names the route and the field, and an `https://`
/// upstream without `upstream_tls:` is verified against the system's roots (which do not
/// know the test's CA: 502, the reason recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_names_the_field_and_https_alone_uses_the_system_roots() {
    use portcullis::clock::Clock;
    let pki = Pki::new();
    let server = TlsServer::start(pki.server(false)).await;
    let half = format!(
        "    upstream_tls:\n      client_cert_file: {:?}\n",
        pki.path("client.pem").display().to_string()
    );
    let yaml =
        crate::util::config(&[crate::util::route("/h", "paylent", &[SECRET], &server.url("/h"), &half)]);
    let e = portcullis::config::Config::from_yaml("t.yaml", &yaml, Path::new("."), &|_| None).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("routes[0]") && e.contains("upstream_tls.client_key_file: required"), "{e}");

    let yaml =
        crate::util::config(&[crate::util::route("/sys", "paylent", &[SECRET], &server.url("/h"), "")]);
    let gw = crate::util::TestGateway::start(&yaml, Clock::System).await;
    let c = crate::util::client();
    assert_eq!(deliver(&c, &gw.url("/sys"), b"{\"event_id\":\"evt_sys_1\"}").await, StatusCode::BAD_GATEWAY);
    let why = reason(&gw, "/sys", 502).await;
    assert!(why.contains("TLS: invalid peer certificate: UnknownIssuer"), "{why}");
    assert!(server.received().is_empty());
}
