//! The keep-alive pool of plain `http://` upstream connections, over hyper's
//! `client::conn::http1`: a stack of connections per upstream authority, one pool per
//! connection worker. A leaf: `forward` puts it beside the HTTPS client.
//!
//! Why not hyper-util's legacy client, which the HTTPS upstreams still use: for each
//! request it builds a pool key, checks a connection out through a future of its own,
//! rewrites the URI and wraps the connection in a `Pooled` guard that goes back through
//! a channel; measured in bench/ (`floor per-core-conn`, `bench/callgrind.sh`), a pool like
//! this one costs ~11,700 fewer instructions per delivery. What the legacy client does that
//! matters is kept:
//! - a request sent on a reused connection that the upstream had just closed (the keep-alive
//!   race), and so never written, is sent again on another connection; a request that was
//!   written is never sent twice;
//!   A request written just as the upstream's close was on its way is not sent again (it may
//!   have arrived): it fails with 502, the claim is released and the provider retries;
//! - idle connections are closed after 45–90 s unused, at most `max_idle_per_host` idle ones
//!   are kept per upstream;
//! - connecting is hyper-util's `HttpConnector`, as before: the resolver off the runtime, each
//!   address of a name tried with its share of the connect timeout, IPv6 and IPv4 raced
//!   (happy eyeballs), `TCP_NODELAY`, TCP keepalive after 60 s idle; a timeout is an
//!   `io::ErrorKind::TimedOut` error, which `forward::send` answers 504. Paid per connection,
//!   not per request;
//! - `Host` from the URI's host and port (never its userinfo) when the request has none, the
//!   request line in origin form.
//!
//! A connection goes back on the stack as soon as the response head is in: it is ready for
//! another request once the response body has been read (by the provider's connection, for
//! a relayed answer), and a checkout takes the newest ready one, skipping those still
//! reading. Keeping the newest in use lets the oldest age out.

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

/// How long an idle connection is kept at least; it is closed at the sweep after the one that
/// found it idle, so between this and twice this.
const IDLE: Duration = Duration::from_secs(45);

/// TCP keepalive probes start after this long without traffic (as the legacy client's).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

type Sender = SendRequest<Full<Bytes>>;

/// Why a request got no response. Its `source()` chain holds the cause (an `io::Error` for a
/// connect failure, of kind `TimedOut` when the connect timeout passed).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connect error")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("request error")]
    Request(#[source] hyper::Error),
    #[error("the upstream URI has no authority")]
    NoAuthority,
}

/// The plain-HTTP connections of one connection worker (cheap to share: one `Arc`).
#[derive(Clone)]
pub struct HttpPool {
    shared: Arc<Shared>,
}

struct Shared {
    /// Per upstream authority (as written in the configuration). A list, searched in order:
    /// a worker reaches the few upstreams of its configuration, named by the operator, and
    /// comparing a short string costs less than hashing it.
    hosts: Mutex<Vec<Host>>,
    connector: HttpConnector,
    max_idle_per_host: usize,
    /// Whether a sweeper task is running (it is started with the first connection, on the
    /// runtime that made it, and ends when the pool is dropped).
    sweeping: AtomicBool,
}

struct Host {
    authority: Box<str>,
    /// The `Host` header of its requests, made once.
    host: HeaderValue,
    /// Its connections, newest on top: ready ones and those still reading a response body.
    conns: Vec<Idle>,
}

struct Idle {
    sender: Sender,
    /// Seen idle by the last sweep: closed by the next one if still unused.
    marked: bool,
}

impl HttpPool {
    pub fn new(connect_timeout: Duration, max_idle_per_host: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_keepalive(Some(TCP_KEEPALIVE));
        HttpPool {
            shared: Arc::new(Shared {
                hosts: Mutex::new(Vec::new()),
                connector,
                max_idle_per_host,
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    /// Sends `req` (absolute URI, `http://`) on a pooled connection, or a new one. The
    /// request is addressed and a connection checked out before the future is made, so that
    /// the future holds the request once (it is moved whole, every byte of it).
    pub fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> impl std::future::Future<Output = Result<Response<Incoming>, PoolError>> + Send + '_ {
        let parts = std::mem::take(req.uri_mut()).into_parts();
        let (mut idle, authority) = match parts.authority {
            Some(authority) => {
                *req.uri_mut() = parts.path_and_query.map_or_else(|| Uri::from_static("/"), Uri::from);
                let (idle, host) = self.shared.checkout(&authority);
                if !req.headers().contains_key(HOST) {
                    req.headers_mut().insert(HOST, host);
                }
                (idle, Some(authority))
            }
            None => (None, None),
        };
        async move {
            let authority = authority.ok_or(PoolError::NoAuthority)?;
            loop {
                let (mut sender, reused) = match idle.take() {
                    Some(s) => (s, true),
                    // Boxed: connecting is rare, and its future would make every send's larger.
                    None => (Box::pin(self.connect(&authority)).await?, false),
                };
                match sender.try_send_request(req).await {
                    Ok(res) => {
                        self.shared.checkin(&authority, sender);
                        return Ok(res);
                    }
                    Err(mut e) => match e.take_message() {
                        // Never written: the connection had closed under us. Another one.
                        Some(r) if reused => {
                            req = r;
                            idle = self.shared.checkout(&authority).0;
                        }
                        _ => return Err(PoolError::Request(e.into_error())),
                    },
                }
            }
        }
    }

    async fn connect(&self, authority: &Authority) -> Result<Sender, PoolError> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| PoolError::Connect(e.into()))?;
        let io = tower::ServiceExt::oneshot(self.shared.connector.clone(), uri)
            .await
            .map_err(|e| PoolError::Connect(e.into()))?;
        let (sender, conn) =
            hyper::client::conn::http1::Builder::new().handshake(io).await.map_err(PoolError::Request)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        self.sweep_later();
        Ok(sender)
    }

    /// Starts the sweeper of idle connections if none runs.
    fn sweep_later(&self) {
        if self.shared.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let guard = Sweeping(Arc::downgrade(&self.shared));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + IDLE, IDLE);
            // After a stall, the next sweep is a whole period later: never two back to back
            // (which would close connections idle for no time at all).
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = guard.0.upgrade() else { return };
                shared.sweep();
            }
        });
    }

    /// How many connections are pooled for `authority` (ready or still reading).
    #[cfg(test)]
    fn pooled(&self, authority: &str) -> usize {
        self.shared.lock().iter().find(|h| &*h.authority == authority).map_or(0, |h| h.conns.len())
    }
}

/// Clears `sweeping` when the sweeper ends (the pool dropped, or its runtime shut down), so
/// that the next connection starts another.
struct Sweeping(Weak<Shared>);

impl Drop for Sweeping {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.sweeping.store(false, Ordering::Relaxed);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Host>> {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest ready connection to `authority` (dropping closed ones on the way), and the
    /// `Host` value of its requests.
    fn checkout(&self, authority: &Authority) -> (Option<Sender>, HeaderValue) {
        let mut hosts = self.lock();
        if let Some(h) = hosts.iter_mut().find(|h| &*h.authority == authority.as_str()) {
            return (h.take(), h.host.clone());
        }
        // The legacy client's `Host`: no userinfo, the port only when not the default.
        let host = match authority.port_u16() {
            Some(port) if port != 80 => HeaderValue::from_str(&format!("{}:{port}", authority.host())),
            _ => HeaderValue::from_str(authority.host()),
        }
        .expect("an authority's host and port are a valid header value");
        hosts.push(Host { authority: authority.as_str().into(), host: host.clone(), conns: Vec::new() });
        (None, host)
    }

    fn checkin(&self, authority: &Authority, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut hosts = self.lock();
        if let Some(h) = hosts.iter_mut().find(|h| &*h.authority == authority.as_str()) {
            if h.conns.len() >= self.max_idle_per_host {
                // At the bound: closed ones go, and only idle (ready) ones count against it;
                // those still reading a response are connections in use, not idle ones.
                h.conns.retain(|c| !c.sender.is_closed());
                if h.conns.iter().filter(|c| c.sender.is_ready()).count() >= self.max_idle_per_host {
                    return;
                }
            }
            h.conns.push(Idle { sender, marked: false });
        }
    }

    /// Closes the connections idle since the last sweep, forgets closed ones. An upstream's
    /// entry stays (its `Host` value): the list holds the upstreams this worker has reached,
    /// those of the configurations it has served (a reload that drops one leaves a few bytes).
    fn sweep(&self) {
        let mut hosts = self.lock();
        for h in hosts.iter_mut() {
            h.conns.retain_mut(|c| {
                if c.sender.is_closed() {
                    return false;
                }
                // Only an idle connection is marked: one still reading a response is in use.
                if c.sender.is_ready() {
                    if c.marked {
                        return false;
                    }
                    c.marked = true;
                }
                true
            });
        }
    }
}

impl Host {
    fn take(&mut self) -> Option<Sender> {
        let mut i = self.conns.len();
        while i > 0 {
            i -= 1;
            let c = &self.conns[i];
            if c.sender.is_ready() {
                return Some(self.conns.remove(i).sender);
            }
            if c.sender.is_closed() {
                self.conns.remove(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream on port 0 that answers every request 200 with its `Host` and request line,
    /// counting the connections it accepted.
    async fn upstream() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        if req.uri().path() == "/big" {
                            // More than hyper's body channel and the socket buffers hold: the
                            // connection is busy until the caller reads it all.
                            let big = Bytes::from(vec![b'x'; 8 << 20]);
                            return Ok::<_, std::convert::Infallible>(Response::new(Full::new(big)));
                        }
                        let host = req.headers().get(HOST).map(|h| h.to_str().unwrap().to_owned());
                        let line = format!("{} {} {}", req.method(), req.uri(), host.unwrap_or_default());
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(line))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (format!("http://{addr}"), accepted)
    }

    fn post(url: &str) -> Request<Full<Bytes>> {
        Request::post(url).body(Full::new(Bytes::from_static(b"{}"))).unwrap()
    }

    async fn text(res: Response<Incoming>) -> String {
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_with_host_and_origin_form() {
        let (base, accepted) = upstream().await;
        let pool = HttpPool::new(Duration::from_secs(5), 8);
        let authority = base.trim_start_matches("http://");
        for _ in 0..3 {
            let res = pool.send(post(&format!("{base}/hook?a=1"))).await.unwrap();
            assert_eq!(text(res).await, format!("POST /hook?a=1 {authority}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, kept alive");
        assert_eq!(pool.pooled(authority), 1);
    }

    #[tokio::test]
    async fn userinfo_is_neither_dialled_nor_sent() {
        let (base, _) = upstream().await;
        let authority = base.trim_start_matches("http://");
        let pool = HttpPool::new(Duration::from_secs(5), 8);
        let res = pool.send(post(&format!("http://user:pw@{authority}/x"))).await.unwrap();
        assert_eq!(text(res).await, format!("POST /x {authority}"));
    }

    #[tokio::test]
    async fn an_ipv6_literal_is_dialled() {
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            return; // no IPv6 loopback on this machine: nothing to dial
        };
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let host = req.headers()[HOST].to_str().unwrap().to_owned();
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(host))))
            });
            let _ =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
        let pool = HttpPool::new(Duration::from_secs(5), 8);
        let res = pool.send(post(&format!("http://[::1]:{port}/"))).await.unwrap();
        assert_eq!(text(res).await, format!("[::1]:{port}"));
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_at_most_the_limit() {
        let (base, accepted) = upstream().await;
        let pool = HttpPool::new(Duration::from_secs(5), 2);
        let url = format!("{base}/");
        // Heads first, bodies later: five connections busy at once.
        let heads = futures_util::future::join_all((0..5).map(|_| pool.send(post(&url)))).await;
        for res in heads {
            text(res.unwrap()).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
        assert_eq!(pool.pooled(base.trim_start_matches("http://")), 2);
    }

    /// The keep-alive race: the upstream closes an idle connection; the next request goes on
    /// a new one, sent once.
    #[tokio::test]
    async fn a_request_on_a_connection_the_upstream_closed_goes_on_a_new_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = requests.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    // One request per connection, answered as if kept alive, then closed.
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"{}") {
                        let n = stream.read(&mut buf).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
                });
            }
        });
        let pool = HttpPool::new(Duration::from_secs(5), 8);
        let url = format!("http://{addr}/");
        for i in 1..=3 {
            let res = pool.send(post(&url)).await.unwrap();
            assert_eq!(text(res).await, "ok");
            assert_eq!(requests.load(Ordering::SeqCst), i, "each request reached the upstream once");
        }
    }

    #[tokio::test]
    async fn refused_and_timed_out_connects_are_told_apart() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let pool = HttpPool::new(Duration::from_secs(5), 8);
        let e = pool.send(post(&format!("http://{addr}/"))).await.unwrap_err();
        assert!(matches!(e, PoolError::Connect(_)), "{e:?}");
        assert_eq!(io_kind(&e), Some(std::io::ErrorKind::ConnectionRefused), "{e:?}");
        // A listener whose accept queue is full drops further SYNs: the connect hangs.
        let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        full.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        full.listen(0).unwrap();
        let addr = full.local_addr().unwrap().as_socket().unwrap();
        let mut held = Vec::new();
        while let Ok(stream) =
            tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await
        {
            held.push(stream.unwrap());
            assert!(held.len() < 64, "the accept queue never filled");
        }
        let pool = HttpPool::new(Duration::from_millis(200), 8);
        let e = pool.send(post(&format!("http://{addr}/"))).await.unwrap_err();
        assert!(matches!(e, PoolError::Connect(_)), "{e:?}");
        assert_eq!(io_kind(&e), Some(std::io::ErrorKind::TimedOut), "{e:?}");
    }

    /// The kind of the first `io::Error` in the error's chain (what `forward::send` reads).
    fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
        let mut src = Some(e);
        while let Some(e) = src {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return Some(io.kind());
            }
            src = e.source();
        }
        None
    }

    /// A connection still reading a large response is in use, not idle: it does not count
    /// against the bound of idle connections, so the one that finished is kept and reused.
    #[tokio::test]
    async fn connections_in_use_do_not_count_against_the_idle_bound() {
        let (base, accepted) = upstream().await;
        let pool = HttpPool::new(Duration::from_secs(5), 1);
        let busy = pool.send(post(&format!("{base}/big"))).await.unwrap();
        text(pool.send(post(&format!("{base}/a"))).await.unwrap()).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        text(pool.send(post(&format!("{base}/b"))).await.unwrap()).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "the idle connection was kept and reused");
        assert_eq!(busy.into_body().collect().await.unwrap().to_bytes().len(), 8 << 20);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_by_the_second_sweep() {
        let (base, _) = upstream().await;
        let pool = HttpPool::new(Duration::from_secs(5), 8);
        let authority = base.trim_start_matches("http://");
        text(pool.send(post(&format!("{base}/"))).await.unwrap()).await;
        // Ready again once the connection's task has read the end of the response.
        tokio::time::timeout(Duration::from_secs(10), async {
            while !pool.shared.lock()[0].conns[0].sender.is_ready() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        pool.shared.sweep();
        assert_eq!(pool.pooled(authority), 1, "marked, kept");
        pool.shared.sweep();
        assert_eq!(pool.pooled(authority), 0, "unused since the last sweep: closed");
    }
}
