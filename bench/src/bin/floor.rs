//! The floor proxy: the thinnest hyper 1 proxy that does what portcullis must at least do:
//! collect the body, check one HMAC, forward over a pooled client. What portcullis costs
//! with nothing else in it.
//!
//! usage: floor LISTEN UPSTREAM_BASE SECRET [per-core]
//!
//! By default it runs on tokio's multi-threaded runtime, as a first proxy would. With
//! `per-core` it runs one single-threaded runtime per core, each with its own listener
//! (SO_REUSEPORT) and its own upstream pool: the threading portcullis uses, so that the two
//! can also be compared with that difference taken out.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args[1].parse().expect("LISTEN");
    let upstream: Arc<str> = args[2].clone().into();
    let key = Hmac::<sha2::Sha256>::new_from_slice(args[3].as_bytes()).unwrap();
    if args.get(4).map(String::as_str) == Some("per-core") {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                let (upstream, key) = (upstream.clone(), key.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async move { serve(listener(addr, true), upstream, key).await })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        rt.block_on(async move { serve(listener(addr, false), upstream, key).await })
    }
}

fn listener(addr: SocketAddr, reuse_port: bool) -> tokio::net::TcpListener {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(reuse_port).unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(1024).unwrap();
    s.set_nonblocking(true).unwrap();
    tokio::net::TcpListener::from_std(s.into()).unwrap()
}

async fn serve(listener: tokio::net::TcpListener, upstream: Arc<str>, key: Hmac<sha2::Sha256>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (client, upstream, key) = (client.clone(), upstream.clone(), key.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let (client, upstream, key) = (client.clone(), upstream.clone(), key.clone());
                async move {
                    let (mut parts, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let sig = parts
                        .headers
                        .get("x-paylent-signature")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("sha256="))
                        .and_then(|v| hex::decode(v).ok());
                    let mut mac = key;
                    mac.update(&body);
                    if sig.map(|s| mac.verify_slice(&s).is_ok()) != Some(true) {
                        let mut res = http::Response::new(Full::new(Bytes::from_static(b"invalid")).map_err(|n| match n {}).boxed());
                        *res.status_mut() = http::StatusCode::UNAUTHORIZED;
                        return Ok::<_, hyper::Error>(res);
                    }
                    parts.uri = format!("{upstream}{}", parts.uri.path()).parse().unwrap();
                    parts.headers.remove("host");
                    let res = client.request(http::Request::from_parts(parts, Full::new(body))).await;
                    Ok(match res {
                        Ok(res) => res.map(|b| b.boxed()),
                        Err(_) => {
                            let mut res = http::Response::new(Full::new(Bytes::from_static(b"bad gateway")).map_err(|n| match n {}).boxed());
                            *res.status_mut() = http::StatusCode::BAD_GATEWAY;
                            res
                        }
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
