//! A route's destinations as configured: `upstream:` (one HTTP(S) upstream, the short form),
//! `destination:` (one of any kind) or `destinations:` (several: fan-out), each with an
//! optional `when:` filter on the body.
//!
//! ```yaml
//! destinations:
//!   - name: billing                      # unique in the route; remembered per delivery
//!     upstream: https://billing.internal/hooks
//!     upstream_tls: {ca_file: ca.pem, client_cert_file: c.pem, client_key_file: k.pem}
//!     when: {pointer: /type, in: [payment.succeeded, refund.created]}
//!   - name: bus
//!     nats: {url: "nats://127.0.0.1:4222", subject: webhooks.stripe, headers: true}
//!   - name: audit
//!     amqp: {url: "amqp://guest:guest@127.0.0.1:5672/%2f", exchange: webhooks, routing_key: stripe}
//! ```
//!
//! The validated types live here; the raw (serde) ones and their validation are the config
//! module's. The runtime side (connections, publishing) is `crate::destination`.

use super::route::Upstream;
use std::sync::Arc;

/// One validated destination of a route.
#[derive(Debug)]
pub struct Destination {
    /// Unique in its route: the name a partial failure remembers it by, shown in logs and the
    /// console. Defaults to the kind (`http`, `nats`, `amqp`) for a route's only destination.
    pub name: String,
    pub target: Target,
    /// Deliveries whose body does not match are not sent here (the destination does not want
    /// them); `None` wants every delivery.
    pub when: Option<When>,
}

/// What kind of destination, with its settings.
#[derive(Debug)]
pub enum Target {
    Http(HttpSettings),
    Nats(NatsSettings),
    Amqp(AmqpSettings),
}

/// An HTTP(S) upstream.
#[derive(Debug)]
pub struct HttpSettings {
    pub upstream: Upstream,
    /// `upstream_tls:`: a private CA, a client certificate (mTLS), a server name. `None` for
    /// `http://`, and for `https://` verified against the system's roots.
    pub tls: Option<Arc<crate::upstream_tls::UpstreamTls>>,
}

/// `nats: {url, subject, headers}`.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// `nats://host:port` (credentials in the URL allowed; never shown).
    pub url: String,
    pub subject: String,
    /// Whether the request's (prepared) headers go along as NATS headers (default true);
    /// the `Portcullis-*` ones always do.
    pub headers: bool,
}

/// `amqp: {url, exchange, routing_key}`.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// `amqp://user:pass@host:port/vhost` (never shown with its password).
    pub url: String,
    /// The exchange (`""`, the default exchange, routes by queue name).
    pub exchange: String,
    pub routing_key: String,
}

/// `when: {pointer, in}`: the value at the JSON pointer equals one of `in` (JSON equality:
/// a string matches a string, a number a number). A body that is not JSON, or lacks the
/// pointer, does not match.
#[derive(Debug, Clone)]
pub struct When {
    pub pointer: crate::jsonptr::Pointer,
    pub any_of: Vec<serde_json::Value>,
}
