//! Redis restarts seen from every connection worker, injective Redis keys, and the admin
//! listener's refusal of cross-site and DNS-rebound requests.

use crate::util::redis::{redis_or_skip, RedisServer};
use crate::util::*;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use portcullis::clock::Clock;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_recovery_test";
const WORKERS: usize = 3;

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"event":"payment.succeeded","event_id":{id:?},"data":{{"amount":1250}}}}"#).into_bytes()
}

fn redis_yaml(redis: &RedisServer, up: &Upstream) -> String {
    format!(
        "listen: 127.0.0.1:0\nlimits:\n  workers: {WORKERS}\nstore:\n  kind: redis\n  url: {:?}\n  timeout: 2s\nroutes:\n{}",
        redis.url(),
        route("/p", "paylent", &[SECRET], &up.url("/p"), "")
    )
}

/// One kept-alive HTTP/1 connection: the gateway serves it on one connection worker. Its
/// requests carry exactly the `Host` given (127.0.0.1 when none is).
pub struct Connection(SendRequest<Full<Bytes>>);

impl Connection {
    pub async fn open(addr: SocketAddr) -> Connection {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Connection(send)
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(String, String)],
        b: Vec<u8>,
    ) -> Answer {
        self.0.ready().await.unwrap();
        let mut req = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req = req.header("host", "127.0.0.1");
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let res = self.0.send_request(req.body(Full::new(Bytes::from(b))).unwrap()).await.unwrap();
        let (parts, body) = res.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn deliver(&mut self, id: &str) -> Answer {
        let b = body(id);
        self.request(Method::POST, "/p", &sign("paylent", SECRET, &b, "", 0), b).await
    }
}

/// Until Redis answers a PING of a client of its own, or the deadline passes.
async fn wait_for_ping(redis: &RedisServer, limit: Duration) {
    let started = Instant::now();
    let client = ::redis::Client::open(redis.url()).unwrap();
    loop {
        if let Ok(mut c) = client.get_multiplexed_async_connection().await {
            if ::redis::cmd("PING").query_async::<String>(&mut c).await.is_ok_and(|p| p == "PONG") {
                return;
            }
        }
        assert!(started.elapsed() < limit, "redis did not answer PING within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_delivery_on_every_worker_and_first_readyz_after_a_redis_restart_succeed() {
    if !redis_or_skip("first_delivery_on_every_worker_and_first_readyz_after_a_redis_restart_succeed") {
        return;
    }
    let mut redis = RedisServer::start();
    let up = Upstream::start().await;
    let gw = TestGateway::start(&redis_yaml(&redis, &up), Clock::System).await;
    let ready = |admin: SocketAddr| async move {
        send(&client(), Method::GET, &format!("http://{admin}/readyz"), &[], "").await.status
    };

    // Each connection stays open, so the next goes to another worker (the least busy): one
    // connection per worker, each of which has made its own Redis connection.
    let mut conns = Vec::new();
    for w in 0..WORKERS {
        let mut c = Connection::open(gw.addr).await;
        assert_eq!(c.deliver(&format!("evt_before_{w}")).await.status, StatusCode::OK);
        conns.push(c);
    }
    assert_eq!(ready(gw.admin).await, StatusCode::OK);

    // Redis goes away: every worker, and readiness, fail closed.
    redis.kill();
    for (w, c) in conns.iter_mut().enumerate() {
        let a = c.deliver(&format!("evt_outage_{w}")).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "worker {w}: {}", a.text());
        assert!(a.headers.contains_key("retry-after"));
    }
    assert_eq!(ready(gw.admin).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.count(), WORKERS, "nothing forwarded while the store is down");
    // Not a synchronisation: the outcome asserted below holds however long this lasts. It
    // lets the reconnection attempts started during the outage fail, so each connection
    // holds the cached failure that used to answer the first request after recovery.
    tokio::time::sleep(Duration::from_millis(700)).await;

    redis.restart();
    wait_for_ping(&redis, Duration::from_secs(10)).await;

    // The first request after Redis answers again succeeds, on every worker and at /readyz.
    assert_eq!(ready(gw.admin).await, StatusCode::OK, "the first /readyz after recovery");
    for (w, c) in conns.iter_mut().enumerate() {
        let a = c.deliver(&format!("evt_outage_{w}")).await;
        assert_eq!(a.status, StatusCode::OK, "worker {w}: first delivery after recovery: {}", a.text());
    }
    assert_eq!(up.count(), 2 * WORKERS);
}

#[tokio::test]
async fn a_repeated_claim_with_its_own_token_is_acquired_not_in_flight() {
    if !redis_or_skip("a_repeated_claim_with_its_own_token_is_acquired_not_in_flight") {
        return;
    }
    use portcullis::idempotency::{redis::RedisStore, Claim, Store, Token};
    let redis = RedisServer::start();
    // The native claim (SET NX PX GET, this machine's Redis is 7.0 or later) and the script
    // an older server gets answer alike.
    for (scripted, key) in [(false, "r:evt"), (true, "r:evt_scripted")] {
        let store = RedisStore::single(&redis.url(), "t:", Duration::from_secs(2), 1).unwrap();
        let store = if scripted { store.scripted() } else { store };
        let (ours, theirs, lease) = (Token(7), Token(8), Duration::from_secs(30));
        // The retry of a claim whose answer was lost with the connection: still ours.
        assert_eq!(store.claim_as(key, ours, lease).await.unwrap(), Claim::Acquired(ours));
        assert_eq!(store.claim_as(key, ours, lease).await.unwrap(), Claim::Acquired(ours));
        match store.claim_as(key, theirs, lease).await.unwrap() {
            Claim::InFlight { retry_after } => {
                assert!(retry_after > Duration::from_secs(20) && retry_after <= lease, "{retry_after:?}")
            }
            other => panic!("scripted {scripted}: {other:?}"),
        }
        store.complete(key, ours, lease).await.unwrap();
        assert_eq!(store.claim_as(key, ours, lease).await.unwrap(), Claim::Delivered);
        assert_eq!(store.claim_as(key, theirs, lease).await.unwrap(), Claim::Delivered);
    }
}

#[tokio::test]
async fn a_delivery_whose_lease_lapsed_still_marks_its_event_delivered() {
    if !redis_or_skip("a_delivery_whose_lease_lapsed_still_marks_its_event_delivered") {
        return;
    }
    use portcullis::idempotency::{redis::RedisStore, Claim, Store, Token};
    let redis = RedisServer::start();
    let store = RedisStore::single(&redis.url(), "t:", Duration::from_secs(2), 1).unwrap();
    let (first, second) = (Token(1), Token(2));
    // The first delivery's lease lapses while its upstream is slow; a retry claims the key.
    assert_eq!(
        store.claim_as("r:lapse", first, Duration::from_millis(50)).await.unwrap(),
        Claim::Acquired(first)
    );
    let d = Deadline::new("the short lease to lapse", Duration::from_secs(10));
    while store.claim_as("r:lapse", second, Duration::from_secs(30)).await.unwrap() != Claim::Acquired(second)
    {
        d.tick().await;
    }
    // The first upstream answers 2xx: the event was delivered, whoever holds the claim.
    store.complete("r:lapse", first, Duration::from_secs(60)).await.unwrap();
    // The retry's upstream fails: its release leaves the delivered mark alone.
    store.release("r:lapse", second).await.unwrap();
    assert_eq!(store.claim_as("r:lapse", Token(3), Duration::from_secs(30)).await.unwrap(), Claim::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_differing_only_by_brace_and_paren_are_both_forwarded_through_redis() {
    if !redis_or_skip("event_ids_differing_only_by_brace_and_paren_are_both_forwarded_through_redis") {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::start().await;
    let gw = TestGateway::start(&redis_yaml(&redis, &up), Clock::System).await;
    let c = client();
    for id in ["evt_a}1", "evt_a)1", "evt_a%7D1"] {
        let b = body(id);
        let a = post(&c, &gw.url("/p"), &sign("paylent", SECRET, &b, "", 0), b).await;
        assert_eq!(a.status, StatusCode::OK, "{id}: {}", a.text());
    }
    assert_eq!(up.count(), 3, "three distinct events, three forwards");
    let b = body("evt_a}1");
    let again = post(&c, &gw.url("/p"), &sign("paylent", SECRET, &b, "", 0), b).await;
    assert_eq!(again.text(), r#"{"status":"duplicate"}"#);
    assert_eq!(up.count(), 3);
}
