//! RabbitMQ (AMQP 0-9-1) destinations (lapin): persistent, mandatory publishes answered by
//! publisher confirms, on one connection per server URL, made on first use and re-made after
//! it is lost.
//!
//! A publish is accepted (`Ok`) only when the broker confirmed it (`basic.ack`) *and* did not
//! return it as unroutable (`mandatory`: `basic.return` before the ack). Everything else is a
//! [`PublishError`], answered 503 + `Retry-After` by the gateway:
//!
//! | what happened                                        | error         |
//! |------------------------------------------------------|---------------|
//! | cannot connect, connection lost, broker blocking us  | `Unavailable` |
//! | the exchange does not exist (channel closed, 404)    | `Unavailable` |
//! | returned unroutable (no binding matched)             | `Refused`     |
//! | `basic.nack`                                          | `Refused`     |
//! | no confirm within the route's `timeout`              | `Timeout`     |
//!
//! # Channels
//!
//! Confirms are per channel, and lapin hands a `basic.return` to whichever confirm of the
//! channel completes next: when the broker acknowledges several publishes at once
//! (`multiple`), the returned message can land on another publish's confirm, so one event is
//! silently dropped and another falsely refused. So a channel here carries **one publish at a
//! time**: a publish borrows an idle confirm-mode channel (or opens one, up to
//! [`MAX_CHANNELS`]), and gives it back once its confirm came. Concurrent publishes run on
//! channels of their own, each with its own confirmation; a channel that failed or timed out
//! is dropped (lapin closes it), never reused. A missing exchange closes only the channel that
//! named it, not the publishes beside it.
//!
//! # Runtime
//!
//! lapin runs the connection's I/O on a thread of its own, registered with the tokio runtime
//! of the task that connected (its `tokio` feature). The gateway's runtimes live as long as
//! the process; a connection whose runtime went away shows as not connected and is re-made.
//!
//! A message that stays unconfirmed (timeout) may still have reached the queue; the provider's
//! retry then publishes it again with the same `message_id`, which consumers can de-duplicate
//! on (AMQP has no broker-side de-duplication).

use super::{Message, PublishError};
use crate::config::destination::AmqpSettings;
use arc_swap::ArcSwapOption;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Channels open at once on one connection (each carries one publish at a time): the bound on
/// concurrent publishes per server URL. Far below RabbitMQ's default `channel_max` (2047); a
/// publish past it waits for a channel, within its timeout.
pub const MAX_CHANNELS: usize = 128;

/// `delivery_mode` 2: the broker writes the message to disk (in a durable queue).
const PERSISTENT: u8 = 2;

/// The AMQP header names of the gateway's own facts (lower case, as the request's are).
const H_PROVIDER: &str = "portcullis-provider";
const H_EVENT_ID: &str = "portcullis-event-id";
const H_KEY: &str = "portcullis-idempotency-key";

/// The connection to one AMQP server URL, shared by every destination that names it; made on
/// first use (no I/O in `new`), reconnected when lost.
pub struct Amqp {
    /// The parsed URL (credentials included: never shown), or why it does not parse.
    uri: Result<AMQPUri, String>,
    /// The URL with its password hidden: the only form that goes into messages.
    shown: String,
    connect_timeout: Duration,
    /// The connection in use; `None` until the first publish, replaced when found lost.
    current: ArcSwapOption<Conn>,
    /// Held while connecting, so concurrent publishes make one connection, not one each.
    connecting: tokio::sync::Mutex<Attempt>,
    /// Connection attempts finished (see [`Attempt`]).
    attempts: AtomicU64,
}

/// The last connection attempt's outcome: a publish that waited for another's attempt takes
/// its failure rather than trying again at once (a broker that is down is not hammered, and
/// a queue of waiters does not spend a connect timeout each).
#[derive(Default)]
struct Attempt {
    failed: Option<PublishError>,
}

/// One live connection and its confirm-mode channels.
struct Conn {
    connection: Connection,
    /// Channels in confirm mode with nothing in flight, ready for the next publish.
    idle: Mutex<Vec<Channel>>,
    /// One permit per channel in use ([`MAX_CHANNELS`]).
    permits: Arc<Semaphore>,
}

/// A channel borrowed for one publish: back to the idle list by [`Lease::release`] once the
/// broker answered; dropped (and so closed by lapin) otherwise.
struct Lease {
    channel: Channel,
    conn: Arc<Conn>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    fn release(self) {
        let Lease { channel, conn, _permit } = self;
        if channel.status().connected() {
            conn.idle.lock().unwrap_or_else(|e| e.into_inner()).push(channel);
        }
    }
}

impl fmt::Debug for Amqp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Amqp").field("url", &self.shown).finish_non_exhaustive()
    }
}

impl Amqp {
    pub fn new(url: &str, connect_timeout: Duration) -> Self {
        let shown = crate::config::redact_url(url).into_owned();
        // lapin's own parse errors may quote the URL: say what is wrong without it.
        let uri = url.parse::<AMQPUri>().map_err(|_| {
            format!("{shown}: not an AMQP URL (amqp://user:password@host:port/vhost, or amqps://)")
        });
        Amqp {
            uri,
            shown,
            connect_timeout,
            current: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(Attempt::default()),
            attempts: AtomicU64::new(0),
        }
    }

    /// Publishes `m` (persistent, mandatory) to `s.exchange` with `s.routing_key`; `Ok` only
    /// on the broker's confirm of a message it routed.
    pub async fn publish(&self, s: &AmqpSettings, m: &Message<'_>) -> Result<(), PublishError> {
        // What is sent is built before any wait: a name AMQP cannot carry fails the same
        // whether the broker is up or not.
        let exchange = short(&s.exchange, "exchange")?;
        let routing_key = short(&s.routing_key, "routing key")?;
        let properties = properties(m)?;
        let deadline = Instant::now() + m.timeout;
        let publish = async {
            let conn = self.connection(deadline).await?;
            let lease = self.lease(&conn).await?;
            let options = BasicPublishOptions { mandatory: true, immediate: false };
            let confirm = lease
                .channel
                .basic_publish(exchange, routing_key, options, m.body, properties)
                .await
                .map_err(|e| self.unavailable("publish", &e))?;
            let confirmation = confirm.await.map_err(|e| self.lost(&s.exchange, &e))?;
            match confirmation {
                Confirmation::Ack(None) => {
                    lease.release();
                    Ok(())
                }
                Confirmation::Ack(Some(returned)) => {
                    lease.release();
                    Err(PublishError::Refused(format!(
                        "{}: exchange {:?} returned the message as unroutable (routing key {:?}): {} {}",
                        self.shown, s.exchange, s.routing_key, returned.reply_code, returned.reply_text
                    )))
                }
                Confirmation::Nack(_) => {
                    lease.release();
                    Err(PublishError::Refused(format!(
                        "{}: exchange {:?} refused the message (nack)",
                        self.shown, s.exchange
                    )))
                }
                // Only a channel without confirm_select answers so; ours all have it. Not
                // reused (the lease is dropped), and not taken for an acceptance.
                Confirmation::NotRequested => Err(PublishError::Unavailable(format!(
                    "{}: the channel is not in confirm mode",
                    self.shown
                ))),
            }
        };
        match tokio::time::timeout_at(deadline, publish).await {
            Ok(r) => r,
            Err(_) => Err(PublishError::Timeout(m.timeout)),
        }
    }

    /// Connects (if not yet) and checks the server answers (for `check --connect`): a channel
    /// is opened (or an idle one found) on the connection.
    pub async fn ping(&self, timeout: Duration) -> Result<(), PublishError> {
        let deadline = Instant::now() + timeout;
        let ping = async {
            let conn = self.connection(deadline).await?;
            self.lease(&conn).await?.release();
            Ok(())
        };
        match tokio::time::timeout_at(deadline, ping).await {
            Ok(r) => r,
            Err(_) => Err(PublishError::Timeout(timeout)),
        }
    }

    /// The live connection, made now if there is none or it was lost.
    async fn connection(&self, deadline: Instant) -> Result<Arc<Conn>, PublishError> {
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let seen = self.attempts.load(Ordering::Acquire);
        let mut attempt = self.connecting.lock().await;
        // Someone else connected while we waited, or failed to: take their outcome.
        if let Some(c) = self.live() {
            return Ok(c);
        }
        if self.attempts.load(Ordering::Acquire) != seen {
            if let Some(e) = &attempt.failed {
                return Err(e.clone());
            }
        }
        let result = self.connect(deadline).await;
        attempt.failed = result.as_ref().err().cloned();
        self.attempts.fetch_add(1, Ordering::Release);
        let conn = Arc::new(result?);
        self.current.store(Some(conn.clone()));
        Ok(conn)
    }

    /// The current connection if it is still up.
    fn live(&self) -> Option<Arc<Conn>> {
        self.current.load_full().filter(|c| c.connection.status().connected())
    }

    async fn connect(&self, deadline: Instant) -> Result<Conn, PublishError> {
        let uri = self.uri.clone().map_err(PublishError::Unavailable)?;
        // No retries inside lapin (its default): a refused connection is answered at once,
        // and the provider's retry is the retry.
        let properties = ConnectionProperties::default().with_connection_name("portcullis".into());
        let limit = deadline.min(Instant::now() + self.connect_timeout);
        // lapin starts the connection's I/O thread before the handshake, and a connect that is
        // given up (our timeout) leaves that thread and its socket behind for good. So the
        // broker is first asked, on a socket of ours, whether it speaks: only a server that
        // answered the protocol header within the limit is handed to lapin, and one that
        // accepts connections but never answers costs a socket we close, not a thread.
        self.probe(&uri, limit).await?;
        let connection = match tokio::time::timeout_at(limit, Connection::connect_uri(uri, properties)).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.unavailable("connect", &e)),
            Err(_) => {
                return Err(PublishError::Unavailable(format!(
                    "{}: not connected within {}",
                    self.shown,
                    humantime::format_duration(self.connect_timeout)
                )))
            }
        };
        tracing::info!(url = %self.shown, "AMQP connection made");
        Ok(Conn { connection, idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(MAX_CHANNELS)) })
    }

    /// Connects to the broker's address and, for plain `amqp://`, sends the AMQP 0-9-1
    /// protocol header and waits for the first byte of the server's answer (a method frame:
    /// `connection.start`), all before `limit`; the socket is closed either way. For
    /// `amqps://` the TCP connection alone is checked (the header would go inside TLS).
    async fn probe(&self, uri: &AMQPUri, limit: Instant) -> Result<(), PublishError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let silent = || {
            PublishError::Unavailable(format!(
                "{}: the server did not answer the AMQP protocol header within {}",
                self.shown,
                humantime::format_duration(self.connect_timeout)
            ))
        };
        let addr = (uri.authority.host.as_str(), uri.authority.port);
        let mut stream = match tokio::time::timeout_at(limit, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(PublishError::Unavailable(format!("{}: cannot connect: {e}", self.shown)))
            }
            Err(_) => return Err(silent()),
        };
        if uri.scheme != lapin::uri::AMQPScheme::AMQP {
            return Ok(());
        }
        let exchange = async {
            stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
            let mut first = [0u8; 1];
            stream.read_exact(&mut first).await?;
            Ok::<u8, std::io::Error>(first[0])
        };
        match tokio::time::timeout_at(limit, exchange).await {
            // Frame type 1: a method frame. Anything else is not an AMQP 0-9-1 broker (a
            // broker of another version answers with its own protocol header, `A`).
            Ok(Ok(1)) => Ok(()),
            Ok(Ok(_)) => Err(PublishError::Unavailable(format!(
                "{}: the server does not speak AMQP 0-9-1",
                self.shown
            ))),
            Ok(Err(e)) => Err(PublishError::Unavailable(format!("{}: connection lost: {e}", self.shown))),
            Err(_) => Err(silent()),
        }
    }

    /// A confirm-mode channel with nothing in flight, for one publish.
    async fn lease(&self, conn: &Arc<Conn>) -> Result<Lease, PublishError> {
        if conn.connection.status().blocked() {
            // A resource alarm (memory, disk): the broker would hold the publish unanswered.
            return Err(PublishError::Unavailable(format!(
                "{}: the broker is blocking publishers (resource alarm)",
                self.shown
            )));
        }
        let permit = conn.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let idle = {
            let mut idle = conn.idle.lock().unwrap_or_else(|e| e.into_inner());
            std::iter::from_fn(|| idle.pop()).find(|c| c.status().connected())
        };
        let channel = match idle {
            Some(c) => c,
            None => {
                let c = conn
                    .connection
                    .create_channel()
                    .await
                    .map_err(|e| self.unavailable("open a channel", &e))?;
                c.confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| self.unavailable("confirm_select", &e))?;
                c
            }
        };
        Ok(Lease { channel, conn: conn.clone(), _permit: permit })
    }

    /// A publish's confirm failed: the channel or the connection closed under it.
    fn lost(&self, exchange: &str, e: &lapin::Error) -> PublishError {
        if let lapin::ErrorKind::ProtocolError(p) = e.kind() {
            if p.get_id() == 404 {
                return PublishError::Unavailable(format!(
                    "{}: exchange {exchange:?} does not exist ({p})",
                    self.shown
                ));
            }
        }
        self.unavailable("confirm", e)
    }

    fn unavailable(&self, what: &str, e: &lapin::Error) -> PublishError {
        PublishError::Unavailable(format!("{}: {what}: {e}", self.shown))
    }
}

/// An AMQP short string (exchange, routing key: at most 255 bytes).
fn short(s: &str, what: &str) -> Result<ShortString, PublishError> {
    ShortString::try_new(s)
        .map_err(|_| PublishError::Refused(format!("the {what} is longer than AMQP's 255 bytes")))
}

/// The message's properties: persistent, `message_id` = the route-scoped event id,
/// `content_type` from the request, and the prepared request headers plus the gateway's own
/// (`portcullis-provider`, `portcullis-event-id`, `portcullis-idempotency-key`) as AMQP
/// headers with string values. A header repeated in the request is one AMQP header, its
/// values joined by ", " (HTTP's own folding).
fn properties(m: &Message<'_>) -> Result<BasicProperties, PublishError> {
    // AMQP caps a short string at 255 bytes: a longer id (a long route name and event id)
    // is sent as its SHA-256, so it still identifies the event rather than failing for good.
    let id = m.broker_id();
    let id = if id.len() > 255 {
        format!("sha256:{}", crate::verify::body_sha256(id.as_bytes())).into()
    } else {
        id
    };
    let message_id = ShortString::try_new(id.as_ref())
        .map_err(|_| PublishError::Refused("the message id cannot be an AMQP short string".into()))?;
    let mut headers = FieldTable::default();
    for name in m.headers.keys() {
        // A field name longer than 255 bytes cannot be written; no real header is.
        let Ok(field) = ShortString::try_new(name.as_str()) else { continue };
        let mut values = m.headers.get_all(name).iter();
        let Some(first) = values.next() else { continue };
        let mut value = first.as_bytes().to_vec();
        for v in values {
            value.extend_from_slice(b", ");
            value.extend_from_slice(v.as_bytes());
        }
        headers.insert(field, AMQPValue::LongString(LongString::from(value)));
    }
    headers.insert(ShortString::from(H_PROVIDER), AMQPValue::LongString(m.provider.into()));
    headers.insert(ShortString::from(H_EVENT_ID), AMQPValue::LongString(m.event_id.into()));
    headers.insert(ShortString::from(H_KEY), AMQPValue::LongString(m.key.as_bytes().into()));
    let mut p = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(message_id)
        .with_headers(headers);
    if let Some(ct) = m.headers.get(http::header::CONTENT_TYPE) {
        if let Some(ct) = ct.to_str().ok().and_then(|s| ShortString::try_new(s).ok()) {
            p = p.with_content_type(ct);
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};

    fn message<'a>(key: &'a HeaderValue, headers: &'a HeaderMap, body: &'a Bytes) -> Message<'a> {
        Message {
            provider: "stripe",
            event_id: "evt_1",
            key,
            headers,
            body,
            timeout: Duration::from_secs(1),
            destination: None,
        }
    }

    #[test]
    fn properties_carry_the_ids_the_headers_and_persistence() {
        let key = HeaderValue::from_static("/hooks:evt_1");
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        let body = Bytes::from_static(b"{}");
        let p = properties(&message(&key, &headers, &body)).unwrap();
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("/hooks:evt_1"));
        assert_eq!(p.content_type().as_ref().map(|s| s.as_str()), Some("application/json"));
        let h = p.headers().as_ref().unwrap().inner();
        let text = |k: &str| match h.get(k) {
            Some(AMQPValue::LongString(s)) => String::from_utf8(s.as_bytes().to_vec()).unwrap(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(text("x-multi"), "a, b");
        assert_eq!(text("portcullis-provider"), "stripe");
        assert_eq!(text("portcullis-event-id"), "evt_1");
        assert_eq!(text("portcullis-idempotency-key"), "/hooks:evt_1");
    }

    #[test]
    fn a_message_id_longer_than_amqp_allows_is_sent_as_its_hash() {
        let key = HeaderValue::from_str(&"k".repeat(300)).unwrap();
        let headers = HeaderMap::new();
        let body = Bytes::new();
        let p = properties(&message(&key, &headers, &body)).unwrap();
        let id = p.message_id().as_ref().unwrap().as_str().to_string();
        assert!(id.starts_with("sha256:") && id.len() == 7 + 64, "{id}");
        // A destination of several: the name follows the key, after a space.
        let key = HeaderValue::from_static("/hooks:evt_1");
        let m = Message { destination: Some("audit"), ..message(&key, &headers, &body) };
        assert_eq!(properties(&m).unwrap().message_id().as_ref().unwrap().as_str(), "/hooks:evt_1 audit");
        assert!(matches!(short(&"x".repeat(256), "exchange"), Err(PublishError::Refused(_))));
    }

    #[test]
    fn a_bad_url_is_reported_without_its_password() {
        let a = Amqp::new("amqq://user:hunter2@host/%2f", Duration::from_secs(1));
        let e = a.uri.unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(!format!("{:?}", Amqp::new("amqp://user:hunter2@host/%2f", Duration::from_secs(1)))
            .contains("hunter2"));
    }
}
