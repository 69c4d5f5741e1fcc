//! NATS JetStream destinations (async-nats): one shared, reconnecting connection per server
//! URL; each delivery published with `Nats-Msg-Id` and accepted only on JetStream's PubAck.
//!
//! # What "accepted" means, and what can still arrive late
//!
//! A delivery is `Ok` only when JetStream answered with a PubAck (a PubAck saying
//! `duplicate: true` too: the stream already holds that `Nats-Msg-Id`). Everything else is a
//! [`PublishError`], answered 503 and the key released.
//!
//! async-nats never fails a publish for want of a connection: while it reconnects, commands
//! wait in its channel and go out once it is back. So a publish is only handed to it when the
//! client reports itself connected; while it is not, the delivery fails at once without
//! leaving anything behind. What remains is the moment between that check and the client
//! noticing a lost connection: a message handed over then is either dropped with the dead
//! connection's write buffer or sent after the reconnection, possibly after this delivery
//! was answered 503. Such a late copy carries the same `Nats-Msg-Id` as the provider's retry,
//! so JetStream's duplicate window (2 minutes by default, the stream's `duplicate_window`)
//! turns the retry into a duplicate PubAck and the stream holds the event once; a retry
//! later than the window would add a second copy. Never is an event lost by it.

use super::{Message, PublishError};
use crate::config::destination::NatsSettings;
use crate::config::redact_url;
use async_nats::connection::State;
use async_nats::header::{HeaderMap as NatsHeaders, HeaderName as NatsName, HeaderValue as NatsValue};
use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
use std::borrow::Cow;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

static PROVIDER: NatsName = NatsName::from_static("Portcullis-Provider");
static EVENT_ID: NatsName = NatsName::from_static("Portcullis-Event-Id");
static IDEMPOTENCY_KEY: NatsName = NatsName::from_static("Portcullis-Idempotency-Key");

/// After a failed first connection, deliveries within this long fail with its error instead
/// of each trying again: with the server down, requests would otherwise queue behind one
/// another's connection attempts (each up to the connect timeout) instead of failing fast.
const RETRY_CONNECT: Duration = Duration::from_secs(1);

/// How often the client pings the server. async-nats declares the connection dead after two
/// unanswered pings; its default (a minute) would leave a silently dead connection taking
/// deliveries, each timing out, for up to three minutes.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// A backstop only: every publish is bounded by its route's timeout, every ping by its own.
const CONTEXT_TIMEOUT: Duration = Duration::from_secs(3600);

/// JetStream's account information: the round trip of [`Nats::ping`].
const JS_INFO: &str = "$JS.API.INFO";

/// The connection to one NATS server URL, shared by every destination that names it; made on
/// first use (no I/O in `new`), reconnected when lost.
pub struct Nats {
    /// As configured: it may hold credentials, so it is shown only as `shown`.
    url: String,
    /// The URL with its password (or token) hidden, for errors and logs.
    shown: String,
    connect_timeout: Duration,
    conn: OnceCell<Conn>,
    /// When the last first-connection attempt failed, and why (see [`RETRY_CONNECT`]).
    failed: Mutex<Option<(Instant, PublishError)>>,
}

/// An established client; async-nats keeps it connected from then on.
struct Conn {
    client: async_nats::Client,
    js: jetstream::Context,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats").field("url", &self.shown).finish_non_exhaustive()
    }
}

impl Nats {
    pub fn new(url: &str, connect_timeout: Duration) -> Self {
        Nats {
            url: url.to_string(),
            shown: redact_url(url).into_owned(),
            connect_timeout,
            conn: OnceCell::new(),
            failed: Mutex::new(None),
        }
    }

    /// Publishes `m` to `s.subject`; `Ok` only on JetStream's PubAck.
    pub async fn publish(&self, s: &NatsSettings, m: &Message<'_>) -> Result<(), PublishError> {
        let deadline = tokio::time::Instant::now() + m.timeout;
        let conn = match tokio::time::timeout_at(deadline, self.connection(false)).await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(
                    self.not_connected(format_args!("connecting took longer than {}", show(m.timeout)))
                )
            }
        };
        // Not connected: fail now rather than leave the message in async-nats' channel, to
        // be sent after the reconnection whatever this delivery was answered.
        self.connected(conn)?;
        let headers = headers(s, m);
        let acked = async {
            let ack = conn.js.publish_with_headers(s.subject.clone(), headers, m.body.clone()).await?;
            ack.await
        };
        match tokio::time::timeout_at(deadline, acked).await {
            // Acknowledged; `duplicate: true` is an acknowledgement too (the stream has it).
            Ok(Ok(_ack)) => Ok(()),
            Ok(Err(e)) => Err(self.publish_error(&s.subject, m.timeout, &e)),
            // A connection lost meanwhile says more than the timeout.
            Err(_) => Err(self.connected(conn).err().unwrap_or(PublishError::Timeout(m.timeout))),
        }
    }

    /// Connects (if not yet) and checks the server answers (for `check --connect`): a round
    /// trip to the JetStream API, so a server without JetStream fails it too.
    pub async fn ping(&self, timeout: Duration) -> Result<(), PublishError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = match tokio::time::timeout_at(deadline, self.connection(true)).await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(self.not_connected(format_args!("connecting took longer than {}", show(timeout))))
            }
        };
        self.connected(conn)?;
        // The raw account-info request, not `query_account`: its typed answer follows the
        // newest servers' and fails to parse an older server's (2.9) perfectly good one.
        let reply = match tokio::time::timeout_at(deadline, conn.client.request(JS_INFO, Bytes::new())).await
        {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                return Err(PublishError::Unavailable(format!("JetStream is not enabled at {}", self.shown)))
            }
            Ok(Err(e)) => return Err(PublishError::Unavailable(format!("JetStream at {}: {e}", self.shown))),
            Err(_) => return Err(PublishError::Timeout(timeout)),
        };
        let info: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
        match info.get("error") {
            None if info.is_object() => Ok(()),
            None => Err(PublishError::Unavailable(format!(
                "JetStream at {}: an answer that is not JSON",
                self.shown
            ))),
            Some(e) => Err(PublishError::Unavailable(format!(
                "JetStream at {}: {}",
                self.shown,
                e.get("description").and_then(|d| d.as_str()).unwrap_or("an error")
            ))),
        }
    }

    /// The shared client, connecting on first use. Until a first connection succeeds, an
    /// attempt is made at most once per [`RETRY_CONNECT`] (unless `force`d); after it,
    /// async-nats reconnects by itself.
    async fn connection(&self, force: bool) -> Result<&Conn, PublishError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        self.conn
            .get_or_try_init(|| async {
                if !force {
                    if let Some((at, e)) = &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
                        if at.elapsed() < RETRY_CONNECT {
                            return Err(e.clone());
                        }
                    }
                }
                let made = self.connect().await;
                if let Err(e) = &made {
                    *self.failed.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((Instant::now(), e.clone()));
                }
                made
            })
            .await
    }

    async fn connect(&self) -> Result<Conn, PublishError> {
        let (addr, auth) =
            split_credentials(&self.url).map_err(|e| self.not_connected(format_args!("{e}")))?;
        let shown = self.shown.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name("portcullis")
            .connection_timeout(self.connect_timeout)
            .ping_interval(PING_INTERVAL)
            // 0, 100 ms, 200 ms, … 1 s between attempts: a server back from a restart is used
            // within a second (async-nats' default waits up to 4 s), at the cost of a refused
            // connection a second while it is down.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(attempts.saturating_sub(1).min(10) as u64 * 100)
            })
            .event_callback(move |event| {
                let shown = shown.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => tracing::info!(nats = %shown, "NATS connected"),
                        async_nats::Event::Disconnected => {
                            tracing::warn!(nats = %shown, "NATS connection lost")
                        }
                        _ => tracing::debug!(nats = %shown, "NATS: {event}"),
                    }
                }
            });
        // async-nats does not read credentials from the URL: they are given apart, and the
        // address it logs (at debug level) no longer holds them.
        options = match auth {
            Auth::None => options,
            Auth::Token(token) => options.token(token),
            Auth::UserPassword(user, password) => options.user_and_password(user, password),
        };
        let client = options
            .connect(addr)
            .await
            .map_err(|e| self.not_connected(format_args!("{}", connect_error(&e))))?;
        let js = jetstream::ContextBuilder::new().timeout(CONTEXT_TIMEOUT).build(client.clone());
        Ok(Conn { client, js })
    }

    fn connected(&self, conn: &Conn) -> Result<(), PublishError> {
        match conn.client.connection_state() {
            State::Connected => Ok(()),
            State::Pending | State::Disconnected => Err(self.not_connected(format_args!("reconnecting"))),
        }
    }

    fn not_connected(&self, why: std::fmt::Arguments<'_>) -> PublishError {
        PublishError::Unavailable(format!("not connected to NATS at {}: {why}", self.shown))
    }

    fn publish_error(
        &self,
        subject: &str,
        timeout: Duration,
        e: &jetstream::context::PublishError,
    ) -> PublishError {
        match e.kind() {
            // No one answered the subject: no stream takes it (or JetStream is off).
            PublishErrorKind::StreamNotFound => PublishError::Unavailable(format!(
                "no JetStream stream takes subject {subject} at {} (or JetStream is not enabled)",
                self.shown
            )),
            PublishErrorKind::TimedOut => PublishError::Timeout(timeout),
            PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
                PublishError::Unavailable(format!("NATS at {}: {e}", self.shown))
            }
            PublishErrorKind::MaxPayloadExceeded
            | PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::WrongLastSequence => {
                PublishError::Refused(format!("JetStream refused it: {e}"))
            }
            PublishErrorKind::Other => {
                match std::error::Error::source(e).and_then(|s| s.downcast_ref::<jetstream::Error>()) {
                    // 503: JetStream itself is unavailable (not enabled, no quorum).
                    Some(js) if js.code() == 503 => {
                        PublishError::Unavailable(format!("JetStream at {}: {js}", self.shown))
                    }
                    // The stream answered no: full, sealed, a message too large for it.
                    Some(js) => PublishError::Refused(format!("JetStream refused it: {js}")),
                    None => PublishError::Unavailable(format!("NATS at {}: {e}", self.shown)),
                }
            }
        }
    }
}

fn show(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// A connection error's own words, without the source chain's I/O details repeated.
fn connect_error(e: &async_nats::ConnectError) -> String {
    match std::error::Error::source(e) {
        Some(source) => format!("{}: {source}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// The NATS headers of one delivery: `Nats-Msg-Id` and the gateway's `Portcullis-*` always,
/// the request's prepared headers too with `headers: true` (every value of a repeated one).
fn headers(s: &NatsSettings, m: &Message<'_>) -> NatsHeaders {
    let key = text(m.key.as_bytes());
    let mut h = NatsHeaders::new();
    h.insert(async_nats::header::NATS_MESSAGE_ID, value(&m.broker_id()));
    h.insert(PROVIDER.clone(), value(m.provider));
    h.insert(EVENT_ID.clone(), value(m.event_id));
    h.insert(IDEMPOTENCY_KEY.clone(), value(&key));
    if s.headers {
        for (name, v) in m.headers {
            if !forwarded(name.as_str()) {
                continue;
            }
            // An HTTP header name is a token: a valid NATS header name as it is.
            h.append(name.as_str(), value(&text(v.as_bytes())));
        }
    }
    h
}

/// Whether a request header goes along as a NATS header. Not the `Portcullis-*` ones: the
/// gateway sets those above, from the delivery. Not `Nats-*`: JetStream obeys those
/// (`Nats-Msg-Id`, `Nats-Expected-*`, `Nats-Rollup` that purges a stream, `Nats-TTL`), and
/// they are the gateway's to set, never a sender's (nor in an underscore spelling).
fn forwarded(name: &str) -> bool {
    !(reserved_prefix(name, "portcullis") || reserved_prefix(name, "nats"))
}

/// `name` (lower case, as HTTP header names are held) starts with `prefix` and then `-` or `_`.
fn reserved_prefix(name: &str, prefix: &str) -> bool {
    name.len() > prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        && matches!(name.as_bytes()[prefix.len()], b'-' | b'_')
}

/// Header bytes as text: HTTP allows bytes past ASCII in a value, NATS headers are UTF-8.
fn text(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// A NATS header value; a line break (possible in an event id read from the body) would end
/// the header, and async-nats panics on one, so it becomes a space.
fn value(s: &str) -> NatsValue {
    match s.parse() {
        Ok(v) => v,
        Err(_) => s.replace(['\r', '\n'], " ").parse().unwrap_or_default(),
    }
}

/// Credentials from a URL's user info, given to async-nats apart from the address.
#[derive(Debug, PartialEq, Eq)]
enum Auth {
    None,
    /// `nats://token@host`.
    Token(String),
    /// `nats://user:password@host`.
    UserPassword(String, String),
}

/// The server address without its user info, and the credentials it held (percent-decoded).
/// The error never repeats the URL (it may hold a password).
fn split_credentials(url: &str) -> Result<(async_nats::ServerAddr, Auth), String> {
    let addr: async_nats::ServerAddr = url.parse().map_err(|_| "not a valid NATS server URL".to_string())?;
    let auth = match (addr.username(), addr.password()) {
        (None, None) => return Ok((addr, Auth::None)),
        (Some(user), None) => Auth::Token(percent_decode(user)),
        (user, Some(password)) => {
            Auth::UserPassword(percent_decode(user.unwrap_or("")), percent_decode(password))
        }
    };
    let mut bare = addr.into_inner();
    // Cannot fail: the URL has a host (it had user info).
    let _ = bare.set_password(None);
    let _ = bare.set_username("");
    let addr =
        async_nats::ServerAddr::from_url(bare).map_err(|_| "not a valid NATS server URL".to_string())?;
    Ok((addr, auth))
}

/// `%XX` escapes of URL user info decoded (a `%` without two hex digits stands for itself).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn credentials_leave_the_url() {
        let (addr, auth) = split_credentials("nats://alice:s%40cret@127.0.0.1:4222").unwrap();
        assert_eq!(auth, Auth::UserPassword("alice".into(), "s@cret".into()));
        assert!(
            !addr.as_url_str().contains("alice") && !addr.as_url_str().contains("cret"),
            "{}",
            addr.as_url_str()
        );
        assert_eq!(addr.port(), 4222);
        let (addr, auth) = split_credentials("nats://tok3n@localhost").unwrap();
        assert_eq!(auth, Auth::Token("tok3n".into()));
        assert!(!addr.as_url_str().contains("tok3n"));
        assert_eq!(split_credentials("nats://127.0.0.1:4222").unwrap().1, Auth::None);
        let e = split_credentials("http://u:hunter2@host").unwrap_err();
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }

    #[test]
    fn headers_always_and_forwarded() {
        let mut prepared = HeaderMap::new();
        prepared.append("x-multi", HeaderValue::from_static("one"));
        prepared.append("x-multi", HeaderValue::from_static("two"));
        prepared.insert("portcullis-provider", HeaderValue::from_static("forged"));
        prepared.insert("nats-rollup", HeaderValue::from_static("all"));
        prepared.insert("nats_expected_stream", HeaderValue::from_static("x"));
        prepared.insert("natsy", HeaderValue::from_static("kept"));
        prepared.insert("x-latin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let key = HeaderValue::from_static("route:evt_1");
        let body = Bytes::from_static(b"{}");
        let m = Message {
            provider: "stripe",
            event_id: "evt\r\n1",
            key: &key,
            headers: &prepared,
            body: &body,
            timeout: Duration::from_secs(1),
            destination: None,
        };
        let mut s = NatsSettings { url: String::new(), subject: "s".into(), headers: true };
        let h = headers(&s, &m);
        assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), "route:evt_1");
        assert_eq!(h.get("Portcullis-Idempotency-Key").unwrap().as_str(), "route:evt_1");
        assert_eq!(h.get("Portcullis-Provider").unwrap().as_str(), "stripe");
        assert_eq!(h.get("Portcullis-Event-Id").unwrap().as_str(), "evt  1");
        let multi: Vec<&str> = h.get_all("x-multi").map(|v| v.as_str()).collect();
        assert_eq!(multi, ["one", "two"]);
        assert!(h.get("portcullis-provider").is_none());
        assert!(h.get("nats-rollup").is_none() && h.get("nats_expected_stream").is_none());
        assert_eq!(h.get("natsy").unwrap().as_str(), "kept");
        assert_eq!(h.get("x-latin").unwrap().as_str(), "caf\u{fffd}");
        s.headers = false;
        let h = headers(&s, &m);
        assert_eq!(h.len(), 4);
    }

    #[tokio::test]
    async fn an_unparsable_url_is_unavailable_without_echoing_it() {
        let n = Nats::new("nats://u:hunter2@[not-a-host", Duration::from_secs(1));
        let e = n.ping(Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(e, PublishError::Unavailable(_)), "{e:?}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(!format!("{n:?}").contains("hunter2"));
    }
}
