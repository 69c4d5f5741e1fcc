//! RabbitMQ destinations against the machine's real broker: what a confirmed publish carries,
//! what is refused or unavailable, the broker going away and coming back (through a proxy the
//! test cuts), concurrent publishes each with their own confirm; then the same through the
//! real gateway, sync and `delivery: queued`.

use crate::util::amqp::{rabbit_or_skip, url, Proxy, Topology, BROKER};
use crate::util::*;
use bytes::Bytes;
use futures_util::future::join_all;
use http::{HeaderMap, HeaderValue, StatusCode};
use lapin::types::AMQPValue;
use portcullis::clock::Clock;
use portcullis::config::destination::AmqpSettings;
use portcullis::destination::amqp::Amqp;
use portcullis::destination::{Message, PublishError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(5);

fn settings(exchange: &str, routing_key: &str) -> AmqpSettings {
    AmqpSettings { url: url(BROKER), exchange: exchange.into(), routing_key: routing_key.into() }
}

/// One delivery's parts, owned, for [`Message`] to borrow.
struct Parts {
    key: HeaderValue,
    headers: HeaderMap,
    body: Bytes,
    event_id: String,
}

impl Parts {
    fn new(event_id: &str, body: &[u8]) -> Parts {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
        headers.insert("stripe-signature", HeaderValue::from_static("t=1,v1=abc"));
        headers.insert("x-request-id", HeaderValue::from_static("req-1"));
        Parts {
            key: HeaderValue::from_str(&format!("/hooks:{event_id}")).unwrap(),
            headers,
            body: Bytes::copy_from_slice(body),
            event_id: event_id.into(),
        }
    }

    fn message(&self) -> Message<'_> {
        Message {
            provider: "stripe",
            event_id: &self.event_id,
            key: &self.key,
            headers: &self.headers,
            body: &self.body,
            timeout: TIMEOUT,
            destination: None,
        }
    }
}

fn header(d: &lapin::message::Delivery, name: &str) -> Option<String> {
    match d.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8(s.as_bytes().to_vec()).unwrap()),
        other => panic!("{name} is not a string: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_publish_lands_byte_identical_persistent_with_its_ids_and_headers() {
    if !rabbit_or_skip("a_confirmed_publish_lands_byte_identical_persistent_with_its_ids_and_headers") {
        return;
    }
    let t = Topology::declare("publish").await;
    let amqp = Amqp::new(&url(BROKER), TIMEOUT);
    // Bytes that a text round trip would change: invalid UTF-8, CR LF, a NUL, trailing space.
    let body = b"{\"type\":\"payment.succeeded\"}\r\n\x00\xff\xfe ";
    let p = Parts::new("evt_publish_1", body);
    amqp.publish(&settings(&t.exchange, &t.routing_key), &p.message()).await.unwrap();

    let got = t.take_all().await;
    assert_eq!(got.len(), 1, "exactly one message");
    let d = &got[0];
    assert_eq!(d.data, body, "body byte-identical");
    assert_eq!(d.properties.delivery_mode(), &Some(2), "persistent");
    assert_eq!(d.properties.message_id().as_ref().map(|s| s.as_str()), Some("/hooks:evt_publish_1"));
    assert_eq!(
        d.properties.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(header(d, "portcullis-provider").as_deref(), Some("stripe"));
    assert_eq!(header(d, "portcullis-event-id").as_deref(), Some("evt_publish_1"));
    assert_eq!(header(d, "portcullis-idempotency-key").as_deref(), Some("/hooks:evt_publish_1"));
    assert_eq!(header(d, "stripe-signature").as_deref(), Some("t=1,v1=abc"));
    assert_eq!(header(d, "x-request-id").as_deref(), Some("req-1"));
    assert_eq!(d.routing_key.as_str(), t.routing_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_message_is_refused_not_dropped() {
    if !rabbit_or_skip("an_unroutable_message_is_refused_not_dropped") {
        return;
    }
    let t = Topology::declare("unroutable").await;
    let amqp = Amqp::new(&url(BROKER), TIMEOUT);
    let p = Parts::new("evt_unroutable", b"{}");
    // An exchange with no binding at all, and the bound one with a key nothing is bound to.
    for s in [settings(&t.unbound, &t.routing_key), settings(&t.exchange, "nobody-listens")] {
        match amqp.publish(&s, &p.message()).await {
            Err(PublishError::Refused(e)) => assert!(e.contains("unroutable"), "{e}"),
            other => panic!("{}: {other:?}", s.exchange),
        }
    }
    assert_eq!(t.count().await, 0);
    // The channel that carried the refusals is still good.
    amqp.publish(&settings(&t.exchange, &t.routing_key), &p.message()).await.unwrap();
    assert_eq!(t.count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_exchange_is_unavailable_and_the_next_publish_still_works() {
    if !rabbit_or_skip("a_missing_exchange_is_unavailable_and_the_next_publish_still_works") {
        return;
    }
    let t = Topology::declare("missing").await;
    let amqp = Amqp::new(&url(BROKER), TIMEOUT);
    let p = Parts::new("evt_missing", b"{\"n\":1}");
    let missing = format!("{}.does-not-exist", t.exchange);
    match amqp.publish(&settings(&missing, &t.routing_key), &p.message()).await {
        Err(PublishError::Unavailable(e)) => {
            assert!(e.contains("does not exist"), "{e}");
            assert!(!e.contains("guest:guest"), "no password in errors: {e}");
        }
        other => panic!("{other:?}"),
    }
    // The broker closed that channel (404); the next publish gets a new one.
    amqp.publish(&settings(&t.exchange, &t.routing_key), &p.message()).await.unwrap();
    let got = t.take_all().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"{\"n\":1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_cut_off_is_unavailable_and_the_same_publisher_works_once_it_is_back() {
    if !rabbit_or_skip("the_broker_cut_off_is_unavailable_and_the_same_publisher_works_once_it_is_back") {
        return;
    }
    let t = Topology::declare("cut").await;
    let proxy = Proxy::start().await;
    let amqp = Amqp::new(&proxy.url(), TIMEOUT);
    let s = AmqpSettings { url: proxy.url(), ..settings(&t.exchange, &t.routing_key) };
    let first = Parts::new("evt_cut_1", b"one");
    amqp.publish(&s, &first.message()).await.unwrap();
    amqp.ping(TIMEOUT).await.unwrap();

    proxy.cut().await;
    // The connection made is gone, and no new one can be made: both are "unavailable",
    // answered well within the timeout (not a wait for a confirm that cannot come).
    let second = Parts::new("evt_cut_2", b"two");
    for attempt in 0..3 {
        let started = Instant::now();
        match amqp.publish(&s, &second.message()).await {
            Err(PublishError::Unavailable(e)) => assert!(!e.contains("guest:guest"), "{e}"),
            other => panic!("attempt {attempt}: {other:?}"),
        }
        assert!(started.elapsed() < TIMEOUT, "attempt {attempt} took {:?}", started.elapsed());
    }
    assert!(matches!(amqp.ping(TIMEOUT).await, Err(PublishError::Unavailable(_))));

    proxy.restore().await;
    amqp.publish(&s, &second.message()).await.unwrap();
    let got = t.take_all().await;
    let bodies: Vec<&[u8]> = got.iter().map(|d| d.data.as_slice()).collect();
    assert_eq!(bodies, [b"one".as_slice(), b"two".as_slice()], "each publish that was confirmed, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_publishes_get_fifty_confirms_and_land_once_each() {
    if !rabbit_or_skip("fifty_concurrent_publishes_get_fifty_confirms_and_land_once_each") {
        return;
    }
    concurrent("concurrent", 50, 10).await;
}

/// Regression: lapin gives a `basic.return` to whichever of a channel's confirms completes
/// next, so with many publishes in flight on one channel (the broker acking them in batches)
/// a routable publish was refused and the unroutable one beside it taken as delivered. Seen
/// with 1000 + 200 on one shared channel; each publish now has a channel to itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_message_fails_its_own_publish_never_another_under_load() {
    if !rabbit_or_skip("a_returned_message_fails_its_own_publish_never_another_under_load") {
        return;
    }
    concurrent("returns", 1000, 200).await;
}

/// `good` routable and `bad` unroutable publishes at once, interleaved, on one publisher with
/// a connection (and a channel) already made: each must get its own answer.
async fn concurrent(test: &str, good: usize, bad: usize) {
    let t = Topology::declare(test).await;
    let amqp = Amqp::new(&url(BROKER), TIMEOUT);
    amqp.ping(TIMEOUT).await.unwrap();
    let routable = settings(&t.exchange, &t.routing_key);
    let unroutable = settings(&t.unbound, &t.routing_key);
    let total = good + bad;
    let is_bad = |i: usize| i * bad / total != (i + 1) * bad / total;
    let parts: Vec<Parts> =
        (0..total).map(|i| Parts::new(&format!("evt_c{i}"), format!("body {i}").as_bytes())).collect();
    let results = join_all(parts.iter().enumerate().map(|(i, p)| {
        let s = if is_bad(i) { &unroutable } else { &routable };
        let amqp = &amqp;
        async move { (i, amqp.publish(s, &p.message()).await) }
    }))
    .await;
    for (i, r) in &results {
        if is_bad(*i) {
            assert!(matches!(r, Err(PublishError::Refused(_))), "{i}: {r:?}");
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
    let got = t.take_all().await;
    assert_eq!(got.len(), good, "{good} confirms, {good} messages");
    let ids: HashSet<String> =
        got.iter().map(|d| d.properties.message_id().as_ref().unwrap().to_string()).collect();
    let want: HashSet<String> =
        (0..total).filter(|i| !is_bad(*i)).map(|i| format!("/hooks:evt_c{i}")).collect();
    assert_eq!(ids, want);
    for d in &got {
        let id = header(d, "portcullis-event-id").unwrap();
        assert_eq!(d.data, format!("body {}", &id["evt_c".len()..]).as_bytes(), "{id}");
    }
}

// Through the gateway: a route whose destination is the test's exchange, behind the proxy.

const SECRET: &str = "amqp-secret";

/// A route `/mq` publishing to `t`'s exchange through `proxy`; `extra` is more of the route.
fn gateway_yaml(t: &Topology, proxy: &Proxy, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /mq\n    provider: paylent\n    secrets: [{SECRET:?}]\n    timeout: 2s\n    destination:\n      amqp: {{url: {:?}, exchange: {:?}, routing_key: {:?}}}\n{extra}",
        proxy.url(),
        t.exchange,
        t.routing_key
    )
}

async fn deliver(c: &HttpClient, gw: &TestGateway, body: &str) -> Answer {
    let b = body.as_bytes().to_vec();
    let mut headers = sign("paylent", SECRET, &b, "", 0);
    headers.push(("content-type".into(), "application/json".into()));
    post(c, &gw.url("/mq"), &headers, b).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_answered_after_the_confirm_lands_once_and_survives_the_broker_going_away() {
    if !rabbit_or_skip(
        "a_delivery_is_answered_after_the_confirm_lands_once_and_survives_the_broker_going_away",
    ) {
        return;
    }
    let t = Topology::declare("gateway").await;
    let proxy = Proxy::start().await;
    let gw = TestGateway::start(&gateway_yaml(&t, &proxy, ""), Clock::System).await;
    let c = client();

    let first = r#"{"event_id":"evt_gw_1","type":"payment.succeeded","note":"caf\u00e9 \r\n"}"#;
    let r = deliver(&c, &gw, first).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(t.count().await, 1, "in the queue when the provider is answered");
    // The provider's retry: a duplicate, not a second message.
    let r = deliver(&c, &gw, first).await;
    assert_eq!((r.status, r.text()), (StatusCode::OK, r#"{"status":"duplicate"}"#.to_string()));
    assert_eq!(t.count().await, 1);
    let got = t.take_all().await;
    assert_eq!(got.len(), 1);
    let d = &got[0];
    assert_eq!(d.data, first.as_bytes(), "body byte-identical");
    assert_eq!(d.properties.delivery_mode(), &Some(2));
    assert_eq!(d.properties.content_type().as_ref().map(|s| s.as_str()), Some("application/json"));
    assert_eq!(header(d, "portcullis-provider").as_deref(), Some("paylent"));
    assert_eq!(header(d, "portcullis-event-id").as_deref(), Some("evt_gw_1"));
    let key = header(d, "portcullis-idempotency-key").expect("the idempotency key");
    assert!(key.ends_with(":evt_gw_1"), "{key}");
    assert_eq!(d.properties.message_id().as_ref().map(|s| s.to_string()), Some(key));
    let names: Vec<String> =
        d.properties.headers().as_ref().unwrap().inner().keys().map(|k| k.to_string()).collect();
    for name in ["x-request-id", "x-forwarded-for", "x-paylent-signature", "content-type"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }

    // The broker goes away: 503 + Retry-After, the key released (a retry is tried again,
    // not answered "in flight" or "duplicate").
    proxy.cut().await;
    let second = r#"{"event_id":"evt_gw_2","type":"refund.created"}"#;
    for _ in 0..2 {
        let r = deliver(&c, &gw, second).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
        assert!(!r.text().contains("guest"), "{}", r.text());
    }
    assert_eq!(t.count().await, 0);
    // Back: the provider's retry is delivered, once.
    proxy.restore().await;
    let r = deliver(&c, &gw, second).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = deliver(&c, &gw, second).await;
    assert_eq!(r.text(), r#"{"status":"duplicate"}"#);
    let got = t.take_all().await;
    assert_eq!(got.len(), 1, "the retry after the broker came back, once");
    assert_eq!(got[0].data, second.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_delivery_accepted_while_the_broker_is_down_lands_once_it_is_back() {
    if !rabbit_or_skip("a_queued_delivery_accepted_while_the_broker_is_down_lands_once_it_is_back") {
        return;
    }
    let t = Topology::declare("queued").await;
    let proxy = Proxy::start().await;
    proxy.cut().await;
    let dir = std::env::temp_dir().join(format!(
        "portcullis-amqp-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("claims.redb").display().to_string();
    let yaml = gateway_yaml(
        &t,
        &proxy,
        "    delivery: queued\n    lease: 4s\n    queue: {backoff: 50ms, max_backoff: 200ms, max_attempts: 1000}\n",
    )
    .replace("listen: 127.0.0.1:0\n", &format!("listen: 127.0.0.1:0\nstore: {{kind: embedded, path: {path:?}}}\n"));
    let gw = TestGateway::start(&yaml, Clock::System).await;
    let c = client();
    let sent = r#"{"event_id":"evt_q_1","type":"payment.succeeded"}"#;
    let r = deliver(&c, &gw, sent).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    // The workers try while the broker is down.
    let deadline = Deadline::new("a failed attempt at the broker", PATIENCE);
    while sample(&gw.metrics().await, "portcullis_queue_attempts_total{outcome=\"retry\"}") < 1.0 {
        deadline.tick().await;
    }
    assert_eq!(t.count().await, 0);

    proxy.restore().await;
    let deadline = Deadline::new("the delivery in the AMQP queue", PATIENCE);
    while t.count().await < 1 {
        deadline.tick().await;
    }
    let deadline = Deadline::new("the gateway's queue to drain", PATIENCE);
    while !queue_drained(&gw.queue_stats().await) {
        deadline.tick().await;
    }
    let got = t.take_all().await;
    assert_eq!(got.len(), 1, "exactly once");
    assert_eq!(got[0].data, sent.as_bytes());
    assert_eq!(header(&got[0], "portcullis-event-id").as_deref(), Some("evt_q_1"));
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression: lapin logs a message the broker returns (unroutable) whole at WARN, body and
/// headers (the provider's signature among them); the gateway's logs must carry neither,
/// nor the broker's password, whatever `RUST_LOG` says about everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_message_and_the_broker_password_stay_out_of_the_logs() {
    if !rabbit_or_skip("a_returned_message_and_the_broker_password_stay_out_of_the_logs") {
        return;
    }
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    let t = Topology::declare("logs").await;
    let dir = std::env::temp_dir().join(format!("portcullis-amqp-logs-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.yaml");
    let yaml = format!(
        "listen: 127.0.0.1:0\nroutes:\n  - path: /mq\n    provider: paylent\n    secrets: [{SECRET:?}]\n    timeout: 2s\n    destination:\n      amqp: {{url: {:?}, exchange: {:?}, routing_key: {:?}}}\n",
        url(BROKER),
        t.unbound,
        t.routing_key
    );
    std::fs::write(&config, yaml).unwrap();
    let mut child = Command::new(bin())
        .args(["--log-format", "json", "serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("listening").unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.to_string();
        }
    };
    let c = client();
    let body = br#"{"event_id":"evt_logs_1","card":"body-marker-4242"}"#.to_vec();
    let headers = sign("paylent", SECRET, &body, "", 0);
    let r = post(&c, &format!("http://{addr}/mq"), &headers, body).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(stderr.contains("unroutable"), "the refusal is logged: {stderr}");
    // Plain, and as a Debug of its bytes (`[98, 111, ...]`, how lapin's types print).
    let forms = |s: &str| {
        let bytes = format!("{:?}", s.as_bytes());
        [s.to_string(), bytes.trim_matches(['[', ']']).to_string()]
    };
    for secret in forms("body-marker-4242") {
        assert!(!stderr.contains(&secret), "no body in the logs: {stderr}");
    }
    for (name, value) in &headers {
        for secret in forms(value) {
            assert!(!stderr.contains(&secret), "no {name} value in the logs: {stderr}");
        }
    }
    assert!(!stderr.contains("guest:guest"), "no broker password in the logs: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_confirm_within_the_timeout_is_a_timeout_and_the_publisher_goes_on() {
    if !rabbit_or_skip("no_confirm_within_the_timeout_is_a_timeout_and_the_publisher_goes_on") {
        return;
    }
    let t = Topology::declare("timeout").await;
    let proxy = Proxy::start().await;
    let amqp = Amqp::new(&proxy.url(), TIMEOUT);
    let s = AmqpSettings { url: proxy.url(), ..settings(&t.exchange, &t.routing_key) };
    amqp.publish(&s, &Parts::new("evt_t_1", b"one").message()).await.unwrap();

    proxy.stall();
    let held = Parts::new("evt_t_2", b"two");
    let m = Message { timeout: Duration::from_millis(800), ..held.message() };
    let started = Instant::now();
    assert_eq!(amqp.publish(&s, &m).await, Err(PublishError::Timeout(Duration::from_millis(800))));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(3), "{took:?}");

    // The broker had it all along: once its answers flow again, the message unconfirmed in
    // time is in the queue (the provider's retry would publish it again, same message_id),
    // and the publisher carries on.
    proxy.resume();
    amqp.publish(&s, &Parts::new("evt_t_3", b"three").message()).await.unwrap();
    let got = t.take_all().await;
    let ids: Vec<String> = got.iter().map(|d| header(d, "portcullis-event-id").unwrap()).collect();
    assert_eq!(ids, ["evt_t_1", "evt_t_2", "evt_t_3"]);
}

/// Regression (attack on issue 17): a server that accepts TCP and never answers left one
/// connection (and one lapin I/O thread) behind per connection attempt, for good. The
/// protocol header is asked on a socket of the gateway's own first; every socket closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_leaves_no_connection_behind() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (o, n) = (open.clone(), accepted.clone());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            o.fetch_add(1, SeqCst);
            n.fetch_add(1, SeqCst);
            let o = o.clone();
            // Reads everything, answers nothing; counts the connection closed at EOF.
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(tokio::io::AsyncReadExt::read(&mut s, &mut buf).await, Ok(n) if n > 0) {}
                o.fetch_sub(1, SeqCst);
            });
        }
    });
    let amqp = Amqp::new(&url(&addr.to_string()), Duration::from_millis(300));
    let parts = Parts::new("evt_silent", b"{}");
    for attempt in 0..12 {
        let m = Message { timeout: Duration::from_millis(300), ..parts.message() };
        let started = Instant::now();
        let r = amqp.publish(&settings("x", "k"), &m).await;
        assert!(
            matches!(r, Err(PublishError::Unavailable(_)) | Err(PublishError::Timeout(_))),
            "attempt {attempt}: {r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3), "attempt {attempt} took {:?}", started.elapsed());
    }
    assert!(accepted.load(SeqCst) >= 1, "the server was tried");
    wait_until("every connection to the silent server closed", Duration::from_secs(10), || {
        open.load(SeqCst) == 0
    })
    .await;
}
