//! Helpers for the integration tests: a real upstream HTTP server, a real gateway on a
//! loopback port, a client, and signing.

#![allow(dead_code)]

pub mod amqp;
pub mod nats;
pub mod process;
pub mod redis;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::config::Config;
use portcullis::runtime::Listeners;
use portcullis::shutdown::Shutdown;
use portcullis::verify::profile::ProfileSet;
use portcullis::verify::Verifier;
use portcullis::{clock::Clock, gateway::Gateway};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The status the upstream answered with.
    pub status: u16,
    pub method: Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct UpstreamState {
    seen: Vec<Seen>,
    /// Statuses to answer with, in order; 200 once empty.
    script: VecDeque<u16>,
    delay: Duration,
    /// When set, every request is answered 503.
    down: bool,
}

/// A real HTTP server on 127.0.0.1 that records what it receives.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<UpstreamState>>,
    /// Open (true) unless [`Upstream::hold`] was called: a held upstream records each request
    /// at once and answers it only after [`Upstream::release`].
    gate: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(UpstreamState::default()));
        let gate = Arc::new(tokio::sync::watch::Sender::new(true));
        let st = state.clone();
        let g = gate.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                let g = g.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        let mut open = g.subscribe();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                            let (status, delay) = {
                                let mut s = st.lock().unwrap();
                                let status = if s.down { 503 } else { s.script.pop_front().unwrap_or(200) };
                                s.seen.push(Seen {
                                    status,
                                    method: parts.method,
                                    uri: parts.uri,
                                    headers: parts.headers,
                                    body,
                                });
                                (status, s.delay)
                            };
                            let _ = open.wait_for(|open| *open).await;
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let mut res =
                                Response::new(Full::new(Bytes::from(format!("{{\"upstream\":{status}}}"))));
                            *res.status_mut() = StatusCode::from_u16(status).unwrap();
                            res.headers_mut().insert("x-upstream", "yes".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(res)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Upstream { addr, state, gate }
    }

    /// From now on, requests are recorded when they arrive and answered only once released.
    pub fn hold(&self) {
        self.gate.send_replace(false);
    }

    /// Answers every held request, and the ones to come, again.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    /// How many distinct idempotency keys reached the upstream, whatever it answered.
    pub fn distinct_keys(&self) -> usize {
        let seen = self.seen();
        let keys: std::collections::HashSet<_> =
            seen.iter().filter_map(|s| s.headers.get("portcullis-idempotency-key")).collect();
        keys.len()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().seen.len()
    }

    /// Answer the next requests with these statuses.
    pub fn script(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script.extend(statuses);
    }

    /// Answer 503 to everything while `down`.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// Idempotency keys of the requests answered 2xx, with how many times each.
    pub fn delivered(&self) -> std::collections::HashMap<String, usize> {
        let mut m = std::collections::HashMap::new();
        for s in self.seen().iter().filter(|s| (200..300).contains(&s.status)) {
            let k = s
                .headers
                .get("portcullis-idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            *m.entry(k).or_insert(0) += 1;
        }
        m
    }

    pub fn set_delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }
}

/// A gateway serving on 127.0.0.1 (and its admin listener), started by the same composition
/// root as `portcullis serve` ([`portcullis::runtime::start`]); asked to stop when dropped.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub gateway: Arc<Gateway>,
    shutdown: Shutdown,
}

impl TestGateway {
    /// Starts a gateway from YAML text, with the memory store unless the YAML says otherwise.
    pub async fn start(yaml: &str, clock: Clock) -> TestGateway {
        let config = Config::from_yaml("test.yaml", yaml, Path::new("."), &|k| std::env::var(k).ok())
            .unwrap_or_else(|e| panic!("{e}"));
        let listeners = Listeners {
            webhook: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin: Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        };
        let shutdown = Shutdown::new();
        let running =
            portcullis::runtime::start(&config, clock, listeners, None, shutdown.clone()).await.unwrap();
        let admin = running.admin.expect("an admin listener");
        TestGateway { addr: running.addr, admin, gateway: running.gateway, shutdown }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The text of the admin listener's `/metrics`.
    pub async fn metrics(&self) -> String {
        send(&client(), Method::GET, &format!("http://{}/metrics", self.admin), &[], "").await.text()
    }

    /// The admin listener's `GET /queue`: one stats object per queued route.
    pub async fn queue_stats(&self) -> serde_json::Value {
        queue_stats(self.admin).await
    }
}

/// `GET /queue` of the admin listener at `admin` (Null when it does not answer with JSON).
pub async fn queue_stats(admin: SocketAddr) -> serde_json::Value {
    let text = send(&client(), Method::GET, &format!("http://{admin}/queue"), &[], "").await.text();
    serde_json::from_str(&text).unwrap_or_default()
}

/// Whether every queued route in `GET /queue` stats has nothing left to deliver.
pub fn queue_drained(stats: &serde_json::Value) -> bool {
    stats.as_array().is_some_and(|routes| !routes.is_empty() && routes.iter().all(|r| r["depth"] == 0))
}

/// How long a test waits for a condition before it fails: long enough for a busy 2-core
/// machine, short enough that a hang is reported rather than waited out.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A deadline to poll a condition against: `while !cond { deadline.tick().await }`.
pub struct Deadline {
    what: String,
    until: Instant,
}

impl Deadline {
    pub fn new(what: impl Into<String>, within: Duration) -> Deadline {
        Deadline { what: what.into(), until: Instant::now() + within }
    }

    /// Waits a little before the next look; panics naming the condition once it has passed.
    pub async fn tick(&self) {
        assert!(Instant::now() < self.until, "timed out waiting for {}", self.what);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// [`Deadline::tick`] for synchronous code.
    pub fn tick_blocking(&self) {
        assert!(Instant::now() < self.until, "timed out waiting for {}", self.what);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` until it holds; panics naming `what` if it does not within `within`.
pub async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Deadline::new(what, within);
    while !cond() {
        deadline.tick().await;
    }
}

/// The sum of every sample of `name`, with whatever labels (or none): robust to a series
/// gaining a label.
pub fn sample_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| match rest.as_bytes().first() {
            Some(b' ') => Some(rest),
            Some(b'{') => rest.split_once("} ").map(|(_, v)| v),
            _ => None,
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// The value of one sample line of Prometheus text, 0 when absent; a series named by some of
/// its labels (`x_total{route="/p"}` for `x_total{route="/p",code="2xx"}`) sums the series
/// that have those labels first.
pub fn sample(metrics: &str, series: &str) -> f64 {
    let prefix = series.strip_suffix('}').map(|s| format!("{s},"));
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' '));
            rest.or_else(|| {
                let more = l.strip_prefix(prefix.as_deref()?)?;
                more.split_once("} ").map(|(_, v)| v)
            })
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A route block for the config YAML.
pub fn route(path: &str, provider: &str, secrets: &[&str], upstream: &str, extra: &str) -> String {
    let secrets: Vec<String> = secrets.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "  - path: {path}\n    provider: {provider}\n    secrets: [{}]\n    upstream: {upstream:?}\n{extra}",
        secrets.join(", ")
    )
}

pub fn config(routes: &[String]) -> String {
    format!("listen: 127.0.0.1:0\nroutes:\n{}", routes.concat())
}

/// Headers a provider would send for `body`.
pub fn sign(provider: &str, secret: &str, body: &[u8], id: &str, ts: u64) -> Vec<(String, String)> {
    let p = ProfileSet::builtin().get(provider).unwrap().clone();
    let v = Verifier::new(p, &[portcullis::verify::Secret::from(secret.to_string())], None).unwrap();
    v.sign(&Method::POST, "", body, id, ts).unwrap().into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

pub fn now() -> u64 {
    Clock::System.now()
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled keep-alive client. An idle connection is reused for 2 s at most, well within the
/// gateway's idle timeout (`header_read_timeout`, 10 s by default): a request is never written
/// to a connection the gateway is closing at that moment (that race ends in IncompleteMessage
/// or a reset on a busy machine).
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(2))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build_http()
}

/// The answer to one request.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(String, String)],
    body: impl Into<Bytes>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let res = client.request(req.body(Full::new(body.into())).unwrap()).await.unwrap();
    let (parts, body) = res.into_parts();
    Answer { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
}

pub async fn post(
    client: &HttpClient,
    url: &str,
    headers: &[(String, String)],
    body: impl Into<Bytes>,
) -> Answer {
    send(client, Method::POST, url, headers, body).await
}

/// The path of the built `portcullis` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}
