//! RabbitMQ (AMQP 0-9-1) destinations (lapin). STUB: the helper building it replaces this file.

use super::{Message, PublishError};
use crate::config::destination::AmqpSettings;
use std::time::Duration;

/// The connection to one AMQP server URL, shared by every destination that names it; made on
/// first use (no I/O in `new`), reconnected when lost.
pub struct Amqp {
    _url: String,
}

impl Amqp {
    pub fn new(url: &str, _connect_timeout: Duration) -> Self {
        Amqp { _url: url.to_string() }
    }

    /// Publishes `m` (persistent, mandatory) to `s.exchange` with `s.routing_key`; `Ok` only
    /// on the broker's confirm of a message it routed.
    pub async fn publish(&self, _s: &AmqpSettings, _m: &Message<'_>) -> Result<(), PublishError> {
        Err(PublishError::Unavailable("AMQP destinations are not built yet".into()))
    }

    /// Connects (if not yet) and checks the server answers (for `check --connect`).
    pub async fn ping(&self, _timeout: Duration) -> Result<(), PublishError> {
        Err(PublishError::Unavailable("AMQP destinations are not built yet".into()))
    }
}
