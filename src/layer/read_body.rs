//! Reads the body under the route's size limit and the body read timeout, into one buffer.
//! An over-long `Content-Length` is refused before a byte is read, and so is a body past the
//! reads one client may have going at once; a body that arrives slower than the minimum rate
//! is cut off. A route with `capture:` keeps the request's parts and body for the event log.

use super::BoxFuture;
use crate::delivery::{Received, Routed};
use crate::response::{Body, BoxError, Captured, Rejection};
use http::header::CONTENT_LENGTH;
use http::Response;
use http_body::Frame;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
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

/// Time a body gets before the minimum rate applies: a sender's first bytes may take a
/// round trip or two.
const RATE_GRACE: Duration = Duration::from_secs(1);

/// A body read too slowly: fewer bytes than the minimum rate allows for the time taken.
#[derive(Debug, thiserror::Error)]
#[error("the body arrived slower than {0} bytes per second")]
pub struct TooSlow(u64);

pin_project_lite::pin_project! {
    /// A request body that must keep arriving: `RATE_GRACE` after the read began and from
    /// then on, at least `rate` bytes for every second since. A sender that trickles a byte
    /// now and then is cut off in about the grace, not after the whole body read timeout.
    pub struct MinRate<B> {
        #[pin]
        body: B,
        rate: Option<NonZeroU64>,
        start: Instant,
        received: u64,
        #[pin]
        deadline: Sleep,
    }
}

impl<B> MinRate<B> {
    /// `rate` in bytes per second; `None` checks nothing.
    pub fn new(body: B, rate: Option<NonZeroU64>) -> Self {
        let start = Instant::now();
        MinRate { body, rate, start, received: 0, deadline: tokio::time::sleep_until(start + RATE_GRACE) }
    }
}

impl<B> http_body::Body for MinRate<B>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        match this.body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(rate), Some(data)) = (this.rate, frame.data_ref()) {
                    *this.received += bytes::Buf::remaining(data) as u64;
                    let earned = Duration::from_millis(this.received.saturating_mul(1000) / rate.get());
                    this.deadline.as_mut().reset(*this.start + RATE_GRACE + earned);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => match this.rate {
                Some(rate) if this.deadline.poll(cx).is_ready() => {
                    Poll::Ready(Some(Err(TooSlow(rate.get()).into())))
                }
                _ => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[derive(Clone)]
pub struct ReadBodyLayer {
    timeout: Duration,
    min_rate: Option<NonZeroU64>,
    reads: Arc<BodyReads>,
}

impl ReadBodyLayer {
    /// Bodies read within `timeout` and at `min_rate` bytes per second at least (0: any
    /// rate), under the per-client bound of `reads`.
    pub fn new(timeout: Duration, min_rate: u64, reads: Arc<BodyReads>) -> Self {
        ReadBodyLayer { timeout, min_rate: NonZeroU64::new(min_rate), reads }
    }
}

impl<S> Layer<S> for ReadBodyLayer {
    type Service = ReadBody<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ReadBody { inner, timeout: self.timeout, min_rate: self.min_rate, reads: self.reads.clone() }
    }
}

#[derive(Clone)]
pub struct ReadBody<S> {
    inner: S,
    timeout: Duration,
    min_rate: Option<NonZeroU64>,
    reads: Arc<BodyReads>,
}

/// How much of a refused body is read and dropped, at most, and for how long.
const LINGER_BYTES: usize = 8 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Reads and drops a refused body, up to `LINGER_BYTES` and `LINGER_TIME`.
async fn linger<B>(body: B)
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut body = std::pin::pin!(Limited::new(body, LINGER_BYTES));
        while let Some(Ok(_)) = body.as_mut().frame().await {}
    })
    .await;
}

impl<S, B> Service<Routed<B>> for ReadBody<S>
where
    S: Service<Received, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, r: Routed<B>) -> Self::Future {
        let mut inner = self.inner.clone();
        let timeout = self.timeout;
        let min_rate = self.min_rate;
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
                return Ok(Rejection::TooLarge(limit).into_response(Some(r.route), None));
            }
            // Past the client's bound the body is not read: the answer goes out and the
            // connection closes on the unread bytes.
            let Some(reading) = reads.try_acquire(r.client) else {
                return Ok(Rejection::Overloaded.into_response(Some(r.route), None));
            };
            let (parts, body) = r.req.into_parts();
            let started = Instant::now();
            let read = Limited::new(MinRate::new(body, min_rate), limit as usize).collect();
            let read = tokio::time::timeout(timeout, read).await;
            drop(reading);
            let body = match read {
                Err(_) => return Ok(Rejection::BodyTimeout(timeout).into_response(Some(r.route), None)),
                Ok(Err(e)) if e.is::<TooSlow>() => {
                    return Ok(Rejection::BodyTimeout(started.elapsed()).into_response(Some(r.route), None))
                }
                Ok(Err(e)) if e.is::<LengthLimitError>() => {
                    return Ok(Rejection::TooLarge(limit).into_response(Some(r.route), None))
                }
                Ok(Err(e)) => {
                    return Ok(Rejection::BodyRead(e.to_string()).into_response(Some(r.route), None))
                }
                Ok(Ok(collected)) => collected.to_bytes(),
            };
            // A capturing route keeps the request as it arrived for the observe layer, which
            // decides by the outcome whether the event log keeps it; other routes copy nothing.
            let captured = r.route.capture.is_some().then(|| Captured {
                method: parts.method.clone(),
                target: parts.uri.path_and_query().cloned(),
                headers: parts.headers.clone(),
                body: body.clone(),
            });
            let Ok(mut res) =
                inner.call(Received { route: r.route, parts, body, peer: r.peer, tls: r.tls }).await;
            if let Some(c) = captured {
                res.extensions_mut().insert(c);
            }
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body fed by hand: chunks sent on `tx` arrive when sent.
    fn fed() -> (
        tokio::sync::mpsc::Sender<Result<Frame<bytes::Bytes>, Infallible>>,
        impl http_body::Body<Data = bytes::Bytes, Error = Infallible>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        (tx, http_body_util::StreamBody::new(tokio_stream_rx(rx)))
    }

    fn tokio_stream_rx<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    fn chunk(n: usize) -> Result<Frame<bytes::Bytes>, Infallible> {
        Ok(Frame::data(bytes::Bytes::from(vec![b'x'; n])))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_trickling_slower_than_the_minimum_rate_is_cut_off_after_the_grace() {
        let (tx, body) = fed();
        let read = tokio::spawn(MinRate::new(body, NonZeroU64::new(1000)).collect());
        tx.send(chunk(1)).await.unwrap();
        let started = Instant::now();
        let err = read.await.unwrap().unwrap_err();
        assert!(err.is::<TooSlow>(), "{err}");
        let took = started.elapsed();
        assert!(took >= RATE_GRACE && took < RATE_GRACE + Duration::from_millis(10), "{took:?}");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_is_read_whole() {
        let (tx, body) = fed();
        let read = tokio::spawn(MinRate::new(body, NonZeroU64::new(1000)).collect());
        // 1,000 bytes a second for five seconds, in pieces a second apart.
        for _ in 0..5 {
            tx.send(chunk(1000)).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        drop(tx);
        assert_eq!(read.await.unwrap().unwrap().to_bytes().len(), 5000);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_minimum_rate_a_slow_body_is_waited_for() {
        let (tx, body) = fed();
        let read = tokio::spawn(MinRate::new(body, None).collect());
        tx.send(chunk(1)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        tx.send(chunk(1)).await.unwrap();
        drop(tx);
        assert_eq!(read.await.unwrap().unwrap().to_bytes().len(), 2);
    }

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
