//! The chaos run: a retrying sender pushes N unique deliveries through two gateway processes
//! while Redis is killed and restarted and the upstream fails at random. Nothing may be lost;
//! a duplicate is allowed only where the upstream accepted a request whose answer never
//! reached the gateway.
//!
//! `CHAOS_DELIVERIES=5000 cargo test chaos -- --nocapture` runs a longer one.

use crate::util::process::GatewayProcess;
use crate::util::redis::{redis_or_skip, RedisServer};
use crate::util::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "chaos-secret";

#[derive(Default)]
struct Ledger {
    /// Accepted deliveries per event id (2xx, or accepted and then the answer was lost).
    accepted: HashMap<String, usize>,
    /// Requests the upstream accepted but never answered.
    unanswered: usize,
    failed: usize,
}

/// An upstream that answers 200 mostly, 500 sometimes, and sometimes accepts a delivery and
/// then drops the connection without answering.
async fn chaos_upstream(ledger: Arc<Mutex<Ledger>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let ledger = ledger.clone();
                    async move {
                        let id = req
                            .headers()
                            .get("portcullis-idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let _ = req.into_body().collect().await;
                        let roll: u32 = rand::thread_rng().gen_range(0..100);
                        let mut l = ledger.lock().unwrap();
                        if roll < 10 {
                            l.failed += 1;
                            let mut res = Response::new(Full::new(Bytes::from_static(b"fail")));
                            *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                            return Ok(res);
                        }
                        *l.accepted.entry(id).or_default() += 1;
                        if roll < 14 {
                            l.unanswered += 1;
                            // Accepted, then the connection drops before the answer.
                            return Err("dropped after accepting");
                        }
                        Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_nothing_lost_nothing_doubled() {
    if !redis_or_skip("chaos_nothing_lost_nothing_doubled") {
        return;
    }
    let n: usize = std::env::var("CHAOS_DELIVERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let up = chaos_upstream(ledger.clone()).await;
    let redis = Arc::new(Mutex::new(RedisServer::start()));
    let url = redis.lock().unwrap().url();
    let yaml = format!(
        "listen: 127.0.0.1:0\nstore:\n  kind: redis\n  url: {url:?}\n  timeout: 500ms\nroutes:\n{}",
        route("/p", "paylent", &[SECRET], &format!("http://{up}/p"), "    timeout: 2s\n    lease: 5s\n")
    );
    let a = GatewayProcess::start(&yaml);
    let b = GatewayProcess::start(&yaml);
    let urls = Arc::new([a.url("/p"), b.url("/p")]);

    // Kill Redis and bring it back, twice, while deliveries flow: once a fifth of them has
    // reached the upstream, and again at three fifths (progress, not time, so that the first
    // outage happens however fast or slow the machine is). An outage lasts 800 ms.
    let done = Arc::new(AtomicBool::new(false));
    let outages = Arc::new(AtomicUsize::new(0));
    let chaos = {
        let (redis, done, outages, ledger) = (redis.clone(), done.clone(), outages.clone(), ledger.clone());
        tokio::task::spawn_blocking(move || {
            for at in [n / 5, n * 3 / 5] {
                let deadline =
                    Deadline::new(format!("{at} deliveries before an outage"), Duration::from_secs(120));
                while ledger.lock().unwrap().accepted.len() < at {
                    if done.load(Ordering::Relaxed) {
                        return;
                    }
                    deadline.tick_blocking();
                }
                redis.lock().unwrap().kill();
                outages.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(800));
                redis.lock().unwrap().restart();
            }
        })
    };

    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let c = client();
    let gave_up = Arc::new(AtomicUsize::new(0));
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (c, urls, gave_up, attempts) = (c.clone(), urls.clone(), gave_up.clone(), attempts.clone());
        tasks.push(tokio::spawn(async move {
            let body = format!(r#"{{"event":"chaos","event_id":"evt_{i}"}}"#).into_bytes();
            let h = sign("paylent", SECRET, &body, "", 0);
            let mut wait = Duration::from_millis(50);
            let mut ok = false;
            // Like a provider: every non-2xx is retried with backoff.
            for attempt in 0..60 {
                attempts.fetch_add(1, Ordering::Relaxed);
                let url = &urls[(i + attempt) % 2];
                let req = post(&c, url, &h, body.clone());
                if let Ok(a) = tokio::time::timeout(Duration::from_secs(10), req).await {
                    if a.status.is_success() {
                        ok = true;
                        break;
                    }
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(800));
            }
            if !ok {
                gave_up.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    chaos.await.unwrap();

    let l = ledger.lock().unwrap();
    let received = l.accepted.len();
    let lost = (0..n).filter(|i| !l.accepted.contains_key(&format!("/p:evt_{i}"))).count();
    let duplicated: usize = l.accepted.values().map(|c| c - 1).sum();
    let line = format!(
        "chaos: sent {n}, received by the upstream {received}, lost {lost}, duplicated {duplicated} \
         (upstream accepted-but-unanswered {}; upstream 500s {}; redis outages {}; attempts {}; gave up {}; {:.1}s)",
        l.unanswered,
        l.failed,
        outages.load(Ordering::Relaxed),
        attempts.load(Ordering::Relaxed),
        gave_up.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{line}");
    println!("{line}");
    assert_eq!(lost, 0, "{line}");
    assert_eq!(gave_up.load(Ordering::Relaxed), 0, "{line}");
    assert!(duplicated <= l.unanswered, "a duplicate without a lost answer: {line}");
    assert!(outages.load(Ordering::Relaxed) >= 1, "redis was killed during the run: {line}");
}
