//! Drives one target with unique, validly signed ~1 KB Paylent deliveries over N keep-alive
//! connections for a fixed time, and prints requests per second and latency percentiles.
//!
//! usage: loadgen URL SECRET CONNECTIONS SECONDS WARMUP_SECONDS RUN_ID

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};

fn body(run: &str, conn: usize, n: u64) -> Vec<u8> {
    let pad = "x".repeat(880);
    format!(
        r#"{{"event":"payment.succeeded","event_id":"evt_{run}_{conn}_{n}","timestamp":"2026-11-30T08:00:00Z","environment_id":"env_bench","data":{{"amount":1250,"currency":"EUR","pad":"{pad}"}}}}"#
    )
    .into_bytes()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        eprintln!("usage: loadgen URL SECRET CONNECTIONS SECONDS WARMUP_SECONDS RUN_ID");
        std::process::exit(2);
    }
    let uri: http::Uri = args[1].parse().expect("URL");
    let secret = args[2].clone().into_bytes();
    let conns: usize = args[3].parse().unwrap();
    let secs: u64 = args[4].parse().unwrap();
    let warmup: u64 = args[5].parse().unwrap();
    let run = args[6].clone();
    let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap());
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(warmup);
    let end = measure_from + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (addr, uri, secret, run) = (addr.clone(), uri.clone(), secret.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let mut lat = Vec::with_capacity(1 << 16);
            let (mut errors, mut n) = (0u64, 0u64);
            let key = Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                n += 1;
                let b = body(&run, c, n);
                let mut mac = key.clone();
                mac.update(&b);
                let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                let req = http::Request::post(uri.path())
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .header("x-paylent-signature", sig)
                    .body(Full::new(Bytes::from(b)))
                    .unwrap();
                let t0 = Instant::now();
                let ok = match sender.send_request(req).await {
                    Ok(res) => {
                        let ok = res.status().is_success();
                        let _ = res.into_body().collect().await;
                        ok
                    }
                    Err(_) => false,
                };
                if t0 >= measure_from {
                    lat.push(t0.elapsed().as_micros() as u32);
                    if !ok {
                        errors += 1;
                    }
                }
                if sender.ready().await.is_err() {
                    errors += 1;
                    break;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0;
    println!(
        "{{\"requests\":{},\"rps\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"errors\":{}}}",
        all.len(),
        all.len() as f64 / secs as f64,
        pct(0.50),
        pct(0.99),
        errors
    );
}
