//! NATS JetStream destinations against real servers: the publisher alone (PubAck, headers,
//! `Nats-Msg-Id` de-duplication, every way of being unavailable), then through the gateway.

use crate::util::nats::{nats_or_skip, NatsServer, TestStream, SHARED};
use crate::util::*;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use portcullis::config::destination::NatsSettings;
use portcullis::destination::nats::Nats;
use portcullis::destination::{Message, PublishError};
use std::time::{Duration, Instant};

const CONNECT: Duration = Duration::from_secs(2);

fn settings(url: &str, subject: &str) -> NatsSettings {
    NatsSettings { url: url.to_string(), subject: subject.to_string(), headers: true }
}

/// One delivery's parts, owned, for [`Delivery::message`].
struct Delivery {
    key: HeaderValue,
    headers: HeaderMap,
    body: Bytes,
    event_id: String,
}

impl Delivery {
    fn new(event_id: &str, body: &'static [u8]) -> Delivery {
        let mut headers = HeaderMap::new();
        headers.append("x-multi", HeaderValue::from_static("first"));
        headers.append("x-multi", HeaderValue::from_static("second"));
        headers.insert("content-type", HeaderValue::from_static("application/octet-stream"));
        headers.insert("portcullis-provider", HeaderValue::from_static("paylent"));
        Delivery {
            key: HeaderValue::from_str(&format!("/hooks:{event_id}")).unwrap(),
            headers,
            body: Bytes::from_static(body),
            event_id: event_id.to_string(),
        }
    }

    fn message(&self, timeout: Duration) -> Message<'_> {
        Message {
            provider: "paylent",
            event_id: &self.event_id,
            key: &self.key,
            headers: &self.headers,
            body: &self.body,
            timeout,
        }
    }
}

/// Not an acceptance, and the publisher's idea of unavailable (or no PubAck in time).
fn assert_failed(r: Result<(), PublishError>, what: &str) -> PublishError {
    match r {
        Ok(()) => panic!("{what}: accepted"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_with_its_headers_byte_identical_and_once_per_key() {
    if !nats_or_skip("published_with_its_headers_byte_identical_and_once_per_key") {
        return;
    }
    let stream = TestStream::create(SHARED, "pub").await;
    let nats = Nats::new(SHARED, CONNECT);
    let s = settings(SHARED, &stream.subject);
    // Not UTF-8, a NUL and a CRLF: the body must arrive byte for byte.
    let d = Delivery::new("evt_1", b"{\"a\":1}\x00\xff\xfe\r\n");
    nats.publish(&s, &d.message(Duration::from_secs(5))).await.expect("a PubAck");
    // The provider's retry: JetStream answers a duplicate PubAck, Ok, and keeps one.
    nats.publish(&s, &d.message(Duration::from_secs(5))).await.expect("a duplicate PubAck is Ok");
    assert_eq!(stream.count().await, 1, "the same Nats-Msg-Id is stored once");

    let all = stream.read_all().await;
    assert_eq!(all.len(), 1);
    let m = &all[0];
    assert_eq!(m.payload, d.body, "body byte-identical");
    let h = m.headers.as_ref().expect("headers");
    assert_eq!(h.get("Nats-Msg-Id").map(|v| v.as_str()), Some("/hooks:evt_1"));
    assert_eq!(h.get("Portcullis-Idempotency-Key").map(|v| v.as_str()), Some("/hooks:evt_1"));
    assert_eq!(h.get("Portcullis-Event-Id").map(|v| v.as_str()), Some("evt_1"));
    assert_eq!(h.get("Portcullis-Provider").map(|v| v.as_str()), Some("paylent"));
    assert_eq!(h.get("content-type").map(|v| v.as_str()), Some("application/octet-stream"));
    let multi: Vec<&str> = h.get_all("x-multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, ["first", "second"], "a repeated header keeps every value, in order");
    // The request's own spelling is not sent beside the gateway's.
    assert!(h.get("portcullis-provider").is_none());

    // Another event is another message; `headers: false` sends only the gateway's four.
    let mut bare = s.clone();
    bare.headers = false;
    let d2 = Delivery::new("evt_2", b"two");
    nats.publish(&bare, &d2.message(Duration::from_secs(5))).await.expect("a PubAck");
    assert_eq!(stream.count().await, 2);
    let all = stream.read_all().await;
    let h = all[1].headers.as_ref().expect("headers");
    assert_eq!(h.get("Nats-Msg-Id").map(|v| v.as_str()), Some("/hooks:evt_2"));
    assert!(h.get("x-multi").is_none() && h.get("content-type").is_none());
    assert_eq!(all[1].payload, Bytes::from_static(b"two"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stream_for_the_subject_is_unavailable_at_once() {
    if !nats_or_skip("no_stream_for_the_subject_is_unavailable_at_once") {
        return;
    }
    let nats = Nats::new(SHARED, CONNECT);
    let subject = format!("{}.nowhere", crate::util::nats::unique("nostream"));
    let d = Delivery::new("evt_x", b"{}");
    let started = Instant::now();
    let e = assert_failed(
        nats.publish(&settings(SHARED, &subject), &d.message(Duration::from_secs(10))).await,
        "a subject no stream takes",
    );
    assert!(matches!(e, PublishError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains(&subject), "the error names the subject: {e}");
    // JetStream's "no responders" comes back at once, not at the timeout.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_within_the_timeout() {
    if !nats_or_skip("an_unreachable_server_is_unavailable_within_the_timeout") {
        return;
    }
    // Bound, never listening: connections to it are refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let url = format!("nats://user:hunter2@127.0.0.1:{port}");
    let nats = Nats::new(&url, CONNECT);
    let d = Delivery::new("evt_u", b"{}");
    for attempt in 0..3 {
        let started = Instant::now();
        let e = assert_failed(
            nats.publish(&settings(&url, "x.y"), &d.message(Duration::from_secs(3))).await,
            "an unreachable server",
        );
        assert!(matches!(e, PublishError::Unavailable(_)), "attempt {attempt}: {e:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "attempt {attempt} took {:?}", started.elapsed());
        assert!(!e.to_string().contains("hunter2"), "the password shown: {e}");
        assert!(e.to_string().contains(&port.to_string()), "the server named: {e}");
    }
    let e = assert_failed(nats.ping(Duration::from_secs(3)).await, "ping");
    assert!(matches!(e, PublishError::Unavailable(_)), "{e:?}");
    // A server that never answers (connect hangs): bounded by the delivery's timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", silent.local_addr().unwrap());
    let nats = Nats::new(&url, Duration::from_secs(30));
    let started = Instant::now();
    let e = assert_failed(
        nats.publish(&settings(&url, "x.y"), &d.message(Duration::from_millis(500))).await,
        "a server that says nothing",
    );
    assert!(matches!(e, PublishError::Unavailable(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_is_unavailable_and_back_once_it_restarts() {
    if !nats_or_skip("a_server_stopped_is_unavailable_and_back_once_it_restarts") {
        return;
    }
    let mut server = NatsServer::start();
    let url = server.url();
    let stream = TestStream::create(&url, "restart").await;
    let nats = Nats::new(&url, CONNECT);
    nats.ping(Duration::from_secs(5)).await.expect("ping");
    let s = settings(&url, &stream.subject);
    let first = Delivery::new("evt_before", b"before");
    nats.publish(&s, &first.message(Duration::from_secs(5))).await.expect("a PubAck");

    server.kill();
    // Down: every attempt fails, within its timeout; the client noticing the loss makes it
    // Unavailable at once (before that, a publish may still wait out its timeout).
    let during = Delivery::new("evt_during", b"during");
    let deadline = Deadline::new("Unavailable at once while the server is down", PATIENCE);
    loop {
        let started = Instant::now();
        let r = nats.publish(&s, &during.message(Duration::from_secs(1))).await;
        let took = started.elapsed();
        let e = assert_failed(r, "the server is down");
        assert!(took < Duration::from_secs(2), "took {took:?}");
        if matches!(e, PublishError::Unavailable(_)) && took < Duration::from_millis(200) {
            break;
        }
        deadline.tick().await;
    }
    assert!(nats.ping(Duration::from_secs(1)).await.is_err(), "ping while down");

    server.restart();
    // The same Nats value reconnects by itself; the provider's retry of the failed delivery
    // is accepted once the server is back.
    let deadline = Deadline::new("a PubAck after the restart", PATIENCE);
    while nats.publish(&s, &during.message(Duration::from_secs(1))).await.is_err() {
        deadline.tick().await;
    }
    // Retried again (the provider did not see the 200): still once.
    nats.publish(&s, &during.message(Duration::from_secs(5))).await.expect("a duplicate PubAck");
    let all = stream.read_all().await;
    let bodies: Vec<&[u8]> = all.iter().map(|m| m.payload.as_ref()).collect();
    assert_eq!(bodies, [b"before".as_slice(), b"during".as_slice()], "each once, nothing lost");
}

/// A quick bounded load for bench/README.md, not part of the suite: 64 publishers for 3 s on
/// one shared connection to the machine's server, ~1 KB bodies, each answered on its PubAck.
/// `cargo test --release --test tests nats::publish_rate -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it by name"]
async fn publish_rate() {
    assert!(nats_or_skip("publish_rate"), "a measurement needs the server");
    let stream = TestStream::create(SHARED, "rate").await;
    let nats = std::sync::Arc::new(Nats::new(SHARED, CONNECT));
    let s = std::sync::Arc::new(settings(SHARED, &stream.subject));
    let until = Instant::now() + Duration::from_secs(3);
    let started = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|w| {
            let (nats, s) = (nats.clone(), s.clone());
            tokio::spawn(async move {
                let body = Bytes::from(vec![b'x'; 1024]);
                let headers = HeaderMap::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    let key = HeaderValue::from_str(&format!("/rate:{w}:{n}")).unwrap();
                    let event_id = format!("{w}:{n}");
                    let m = Message {
                        provider: "paylent",
                        event_id: &event_id,
                        key: &key,
                        headers: &headers,
                        body: &body,
                        timeout: Duration::from_secs(5),
                    };
                    nats.publish(&s, &m).await.expect("a PubAck");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!("NATS publisher: {total} PubAcks in {secs:.2} s = {:.0}/s", total as f64 / secs);
    assert_eq!(stream.count().await, total, "every PubAck is a message in the stream");
}
