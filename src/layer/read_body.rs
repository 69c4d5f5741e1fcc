//! Reads the body under the route's size limit and the body read timeout, into one buffer.
//! An over-long `Content-Length` is refused before a byte is read, and so is a body past the
//! reads one client may have going at once.

use super::BoxFuture;
use crate::delivery::{Delivery, Routed};
use crate::error::{Body, GatewayError};
use http::header::CONTENT_LENGTH;
use http::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// The bodies being read, per client address. An unverified body costs a connection and
/// the bytes it has sent while it trickles in; bounding the reads per client keeps one
/// address (one attacker's host) from holding thousands of them, while every other sender's
/// bodies are read as usual. Entries exist only while a read is going on.
pub struct BodyReads {
    per_client: usize,
    reading: Mutex<HashMap<IpAddr, usize>>,
}

impl BodyReads {
    /// At most `per_client` bodies read at once from one client address.
    pub fn new(per_client: usize) -> Self {
        BodyReads { per_client, reading: Mutex::new(HashMap::new()) }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Poisoned only if a thread panicked mid-update of a plain map of counts.
        self.reading.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one of `client`'s reads, or `None` when it has `per_client` going.
    pub fn try_acquire(self: &Arc<Self>, client: IpAddr) -> Option<Reading> {
        let mut counts = self.counts();
        let n = counts.entry(client).or_insert(0);
        if *n >= self.per_client {
            return None;
        }
        *n += 1;
        Some(Reading { reads: self.clone(), client })
    }

    /// The bodies being read from `client` now.
    pub fn reading(&self, client: IpAddr) -> usize {
        self.counts().get(&client).copied().unwrap_or(0)
    }
}

/// One body read going on, given back when dropped.
pub struct Reading {
    reads: Arc<BodyReads>,
    client: IpAddr,
}

impl Drop for Reading {
    fn drop(&mut self) {
        let mut counts = self.reads.counts();
        if let Some(n) = counts.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

#[derive(Clone)]
pub struct ReadBodyLayer {
    timeout: Duration,
    reads: Arc<BodyReads>,
}

impl ReadBodyLayer {
    /// Bodies read within `timeout`, under the per-client bound of `reads`.
    pub fn new(timeout: Duration, reads: Arc<BodyReads>) -> Self {
        ReadBodyLayer { timeout, reads }
    }
}

impl<S> Layer<S> for ReadBodyLayer {
    type Service = ReadBody<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ReadBody { inner, timeout: self.timeout, reads: self.reads.clone() }
    }
}

#[derive(Clone)]
pub struct ReadBody<S> {
    inner: S,
    timeout: Duration,
    reads: Arc<BodyReads>,
}

/// How much of a refused body is read and dropped, at most, and for how long.
const LINGER_BYTES: usize = 8 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Reads and drops a refused body, up to `LINGER_BYTES` and `LINGER_TIME`.
async fn linger(body: hyper::body::Incoming) {
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut body = Limited::new(body, LINGER_BYTES);
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

impl<S> Service<Routed> for ReadBody<S>
where
    S: Service<Delivery, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, r: Routed) -> Self::Future {
        let mut inner = self.inner.clone();
        let timeout = self.timeout;
        let reads = self.reads.clone();
        Box::pin(async move {
            let limit = r.route.max_body;
            let declared = r
                .req
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                // Answered before the body is read; what the sender is still writing is read
                // and dropped for a while, so that closing on unread bytes does not reset the
                // connection before the sender has read the 413.
                tokio::spawn(linger(r.req.into_body()));
                return Ok(GatewayError::TooLarge(limit).into_response(Some(r.route), None));
            }
            // Past the client's bound the body is not read: the answer goes out and the
            // connection closes on the unread bytes.
            let Some(reading) = reads.try_acquire(r.client) else {
                return Ok(GatewayError::Overloaded.into_response(Some(r.route), None));
            };
            let (parts, body) = r.req.into_parts();
            let read = Limited::new(body, limit as usize).collect();
            let read = tokio::time::timeout(timeout, read).await;
            drop(reading);
            let body = match read {
                Err(_) => return Ok(GatewayError::BodyTimeout(timeout).into_response(Some(r.route), None)),
                Ok(Err(e)) if e.is::<LengthLimitError>() => {
                    return Ok(GatewayError::TooLarge(limit).into_response(Some(r.route), None))
                }
                Ok(Err(e)) => {
                    return Ok(GatewayError::BodyRead(e.to_string()).into_response(Some(r.route), None))
                }
                Ok(Ok(collected)) => collected.to_bytes(),
            };
            inner
                .call(Delivery {
                    route: r.route,
                    parts,
                    body,
                    peer: r.peer,
                    tls: r.tls,
                    key: Arc::from(""),
                    secret_index: 0,
                    nonce: None,
                })
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded_per_client_and_given_back() {
        let reads = Arc::new(BodyReads::new(2));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = reads.try_acquire(a).unwrap();
        let _second = reads.try_acquire(a).unwrap();
        assert!(reads.try_acquire(a).is_none(), "a third read from the same client");
        assert!(reads.try_acquire(b).is_some(), "another client is not held back");
        drop(first);
        assert_eq!(reads.reading(a), 1);
        assert!(reads.try_acquire(a).is_some());
        drop(_second);
        assert!(reads.counts().get(&b).is_none(), "no entry is left for a client reading nothing");
    }
}
