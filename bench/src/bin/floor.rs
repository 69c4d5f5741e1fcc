//! The floor proxy: the thinnest hyper 1 proxy that does what portcullis must at least do:
//! collect the body, check one HMAC, forward over a pooled client. What portcullis costs
//! with nothing else in it.
//!
//! usage: floor LISTEN UPSTREAM_BASE SECRET [per-core | per-core-conn]
//!
//! By default it runs on tokio's multi-threaded runtime, as a first proxy would. With
//! `per-core` it runs one single-threaded runtime per core, each with its own listener
//! (SO_REUSEPORT) and its own upstream pool: the threading portcullis uses, so that the two
//! can also be compared with that difference taken out. `per-core-conn` is `per-core` with
//! hyper's legacy client replaced by a pool of `hyper::client::conn::http1` connections of
//! its own (a stack of idle senders per core): what replacing the legacy client in portcullis
//! would save, measured before doing it.

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
    let mode = args.get(4).map(String::as_str);
    if mode == Some("per-core") || mode == Some("per-core-conn") {
        let raw = mode == Some("per-core-conn");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                let (upstream, key) = (upstream.clone(), key.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async move {
                        if raw {
                            serve_raw(listener(addr, true), upstream, key).await
                        } else {
                            serve(listener(addr, true), upstream, key).await
                        }
                    })
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

fn verified(key: Hmac<sha2::Sha256>, parts: &http::request::Parts, body: &[u8]) -> bool {
    let sig = parts
        .headers
        .get("x-paylent-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|v| hex::decode(v).ok());
    let mut mac = key;
    mac.update(body);
    sig.map(|s| mac.verify_slice(&s).is_ok()) == Some(true)
}

fn status(code: http::StatusCode, text: &'static str) -> http::Response<BoxBody> {
    let mut res =
        http::Response::new(Full::new(Bytes::from_static(text.as_bytes())).map_err(|n| match n {}).boxed());
    *res.status_mut() = code;
    res
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;
type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// The idle upstream connections of one core: taken from the top, put back after the
/// response head (HTTP/1: the sender is ready again once the response body has been read).
#[derive(Clone, Default)]
struct Pool(Arc<std::sync::Mutex<Vec<Sender>>>);

impl Pool {
    async fn send(
        &self,
        authority: &str,
        req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, ()> {
        let idle = {
            let mut idle = self.0.lock().unwrap();
            loop {
                match idle.pop() {
                    Some(s) if s.is_ready() => break Some(s),
                    Some(s) if !s.is_closed() => {
                        // Still reading its last response: keep it for later, use another.
                        idle.insert(0, s);
                        break None;
                    }
                    Some(_) => continue,
                    None => break None,
                }
            }
        };
        let mut sender = match idle {
            Some(s) => s,
            None => {
                let stream = tokio::net::TcpStream::connect(authority).await.map_err(|_| ())?;
                stream.set_nodelay(true).map_err(|_| ())?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| ())?;
                tokio::spawn(conn);
                sender
            }
        };
        let res = sender.send_request(req).await.map_err(|_| ());
        self.0.lock().unwrap().push(sender);
        res
    }
}

async fn serve_raw(listener: tokio::net::TcpListener, upstream: Arc<str>, key: Hmac<sha2::Sha256>) {
    let authority: Arc<str> = upstream.trim_start_matches("http://").trim_end_matches('/').into();
    let host = http::HeaderValue::from_str(&authority).unwrap();
    let pool = Pool::default();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (pool, authority, host, key) = (pool.clone(), authority.clone(), host.clone(), key.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let (pool, authority, host, key) =
                    (pool.clone(), authority.clone(), host.clone(), key.clone());
                async move {
                    let (mut parts, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    if !verified(key, &parts, &body) {
                        return Ok::<_, hyper::Error>(status(http::StatusCode::UNAUTHORIZED, "invalid"));
                    }
                    parts.headers.insert(http::header::HOST, host);
                    let res = pool.send(&authority, http::Request::from_parts(parts, Full::new(body))).await;
                    Ok(match res {
                        Ok(res) => res.map(|b| b.boxed()),
                        Err(()) => status(http::StatusCode::BAD_GATEWAY, "bad gateway"),
                    })
                }
            });
            let _ =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn serve(listener: tokio::net::TcpListener, upstream: Arc<str>, key: Hmac<sha2::Sha256>) {
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http();
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
                    if !verified(key, &parts, &body) {
                        return Ok::<_, hyper::Error>(status(http::StatusCode::UNAUTHORIZED, "invalid"));
                    }
                    parts.uri = format!("{upstream}{}", parts.uri.path()).parse().unwrap();
                    parts.headers.remove("host");
                    let res = client.request(http::Request::from_parts(parts, Full::new(body))).await;
                    Ok(match res {
                        Ok(res) => res.map(|b| b.boxed()),
                        Err(_) => {
                            let mut res = http::Response::new(
                                Full::new(Bytes::from_static(b"bad gateway")).map_err(|n| match n {}).boxed(),
                            );
                            *res.status_mut() = http::StatusCode::BAD_GATEWAY;
                            res
                        }
                    })
                }
            });
            let _ =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
