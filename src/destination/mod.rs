//! Where a verified delivery goes: the route's destinations. An HTTP(S) upstream (the
//! pooled client of [`crate::forward`]), a NATS JetStream subject ([`nats`]) or a RabbitMQ
//! exchange ([`amqp`]). A delivery is accepted once every destination that wants it (its
//! `when:` filter) has durably accepted it: the upstream answered 2xx, JetStream sent its
//! PubAck, RabbitMQ confirmed the publish (and did not return it as unroutable).
//!
//! The brokers' connections are made on first use and kept, one per distinct server URL,
//! across configuration reloads ([`brokers`]). [`fanout`] sends one delivery to every
//! destination that wants it, for the request path and the queue's workers alike, and
//! remembers which accepted (sub-keys in the idempotency store; the queued item's `done`).

pub mod amqp;
pub mod brokers;
pub mod fanout;
pub mod nats;

pub use brokers::Brokers;
pub use fanout::{deliver, Fate, Memory, Report, Senders};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use std::time::Duration;

/// Why a broker did not accept a delivery. Every variant is answered 503 + `Retry-After`
/// (the provider retries; the key is released); the text is for the log line and the
/// console, and never holds a credential (URLs are shown with their password hidden).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The broker cannot be reached, or cannot take it (not connected, JetStream disabled,
    /// no stream for the subject, the exchange does not exist).
    #[error("{0}")]
    Unavailable(String),
    /// The broker answered and refused it (a nack, a message returned as unroutable).
    #[error("{0}")]
    Refused(String),
    /// No acknowledgement within the route's timeout.
    #[error("no acknowledgement within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// One delivery as a broker publishes it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The provider's name (`Portcullis-Provider`).
    pub provider: &'a str,
    /// The event's id as the provider named it (hashed when longer than 128 bytes).
    pub event_id: &'a str,
    /// The route-scoped id (`Portcullis-Idempotency-Key`, `<route>:<event id>`): JetStream's
    /// `Nats-Msg-Id` and AMQP's `message_id`, so the broker's own de-duplication backs the
    /// gateway's.
    pub key: &'a HeaderValue,
    /// The request's headers as prepared for forwarding (`forward::prepare`: hop-by-hop and
    /// forged ones out, `Portcullis-*`, `X-Forwarded-*`, `X-Request-Id` in).
    pub headers: &'a HeaderMap,
    /// The raw body, byte for byte as received.
    pub body: &'a Bytes,
    /// How long to wait for the broker's acknowledgement (the route's `timeout`), connecting
    /// included.
    pub timeout: Duration,
    /// For a route with several destinations, this destination's name: see
    /// [`Message::broker_id`].
    pub destination: Option<&'a str>,
}

impl Message<'_> {
    /// The id the broker de-duplicates by (JetStream's `Nats-Msg-Id`, AMQP's `message_id`):
    /// the route-scoped key, and for one of several destinations the key, a space and the
    /// destination's name. JetStream de-duplicates per stream, and two destinations of one
    /// route may publish into one stream (`orders.x` and `audit.x` under `>`): with the key
    /// alone the second would be taken for a duplicate of the first and dropped, PubAck and
    /// all. The key is visible ASCII (no space), so the pair is unambiguous.
    pub fn broker_id(&self) -> std::borrow::Cow<'_, str> {
        let key = String::from_utf8_lossy(self.key.as_bytes());
        match self.destination {
            None => key,
            Some(name) => format!("{key} {name}").into(),
        }
    }
}

/// The options of the HTTP(S) clients the gateway makes, from `limits:`.
pub fn client_options(limits: &crate::config::Limits) -> crate::upstream_tls::ClientOptions {
    crate::upstream_tls::ClientOptions {
        connect_timeout: limits.upstream_connect_timeout,
        max_idle_per_host: limits.upstream_max_idle_per_host,
    }
}
