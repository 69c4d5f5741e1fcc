//! NATS JetStream destinations (async-nats). STUB: the helper building it replaces this file.

use super::{Message, PublishError};
use crate::config::destination::NatsSettings;
use std::time::Duration;

/// The connection to one NATS server URL, shared by every destination that names it; made on
/// first use (no I/O in `new`), reconnected when lost.
pub struct Nats {
    _url: String,
}

impl Nats {
    pub fn new(url: &str, _connect_timeout: Duration) -> Self {
        Nats { _url: url.to_string() }
    }

    /// Publishes `m` to `s.subject`; `Ok` only on JetStream's PubAck.
    pub async fn publish(&self, _s: &NatsSettings, _m: &Message<'_>) -> Result<(), PublishError> {
        Err(PublishError::Unavailable("NATS destinations are not built yet".into()))
    }

    /// Connects (if not yet) and checks the server answers (for `check --connect`).
    pub async fn ping(&self, _timeout: Duration) -> Result<(), PublishError> {
        Err(PublishError::Unavailable("NATS destinations are not built yet".into()))
    }
}
