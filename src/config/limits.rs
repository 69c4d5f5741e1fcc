//! Edge limits of the webhook listener and the upstream client, with their defaults.

use super::raw::RawLimits;
use std::time::Duration;

/// Edge limits of the webhook listener and the upstream client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has to send a request's headers, and the most an idle keep-alive
    /// connection waits for the next request.
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's whole body (408 past it).
    pub body_read_timeout: Duration,
    /// On SIGTERM, how long in-flight deliveries may finish before their keys are released.
    pub drain_timeout: Duration,
    /// Open connections at most; past it a connection is answered 503 and closed.
    pub max_connections: usize,
    /// Open connections from one client address at most (its canonical IP, as accepted);
    /// past it a connection is answered 503 and closed without being read, so slow senders
    /// at one address cannot take every connection slot. Trusted proxies are exempt, as all
    /// traffic comes from them. 0 for no bound.
    pub max_connections_per_client: usize,
    /// Requests being handled at once at most, counted once their body is read; past it,
    /// 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// Bodies read at once from one client address at most; past it, 503 with
    /// `Retry-After` and the connection closed. Slow senders at one address cannot hold
    /// more; genuine deliveries from other addresses are read as usual.
    pub max_body_reads_per_client: usize,
    /// Bytes per second a body must arrive at on average, a second after its read began
    /// (408 past it, and the connection closed); 0 accepts any rate up to the body read
    /// timeout.
    pub min_body_rate: u64,
    /// Header lines in a request at most (431 past it).
    pub max_headers: usize,
    /// Bytes of request line and headers at most (431 past it).
    pub max_header_bytes: usize,
    pub upstream_connect_timeout: Duration,
    /// Idle pooled connections kept per upstream host.
    pub upstream_max_idle_per_host: usize,
    /// Threads serving webhook connections, each with its own event loop and upstream pool.
    pub workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_client: 256,
            max_in_flight: 4_096,
            max_body_reads_per_client: 64,
            min_body_rate: 1024,
            max_headers: 100,
            max_header_bytes: 16 * 1024,
            upstream_connect_timeout: Duration::from_secs(2),
            upstream_max_idle_per_host: 256,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl RawLimits {
    /// The limits given, the defaults for the others.
    pub(super) fn validate(self) -> Result<Limits, String> {
        let d = Limits::default();
        let l = self;
        let limits = Limits {
            header_read_timeout: l.header_read_timeout.unwrap_or(d.header_read_timeout),
            body_read_timeout: l.body_read_timeout.unwrap_or(d.body_read_timeout),
            drain_timeout: l.drain_timeout.unwrap_or(d.drain_timeout),
            max_connections: l.max_connections.unwrap_or(d.max_connections),
            max_connections_per_client: l.max_connections_per_client.unwrap_or(d.max_connections_per_client),
            max_in_flight: l.max_in_flight.unwrap_or(d.max_in_flight),
            max_body_reads_per_client: l.max_body_reads_per_client.unwrap_or(d.max_body_reads_per_client),
            min_body_rate: match &l.min_body_rate {
                Some(s) => s.bytes().map_err(|e| format!("limits.min_body_rate: {e}"))?,
                None => d.min_body_rate,
            },
            max_headers: l.max_headers.unwrap_or(d.max_headers),
            max_header_bytes: l.max_header_bytes.unwrap_or(d.max_header_bytes),
            upstream_connect_timeout: l.upstream_connect_timeout.unwrap_or(d.upstream_connect_timeout),
            upstream_max_idle_per_host: l.upstream_max_idle_per_host.unwrap_or(d.upstream_max_idle_per_host),
            workers: l.workers.unwrap_or(d.workers),
        };
        if limits.max_header_bytes < 8192 {
            return Err("limits.max_header_bytes must be at least 8192".into());
        }
        if limits.max_connections == 0
            || limits.max_in_flight == 0
            || limits.max_body_reads_per_client == 0
            || limits.max_headers == 0
            || limits.workers == 0
        {
            return Err(
                "limits: max_connections, max_in_flight, max_body_reads_per_client, max_headers and workers must be at least 1".into()
            );
        }
        for (name, t) in [
            ("header_read_timeout", limits.header_read_timeout),
            ("body_read_timeout", limits.body_read_timeout),
            ("upstream_connect_timeout", limits.upstream_connect_timeout),
        ] {
            if t.is_zero() {
                return Err(format!("limits.{name} must be more than zero"));
            }
        }
        Ok(limits)
    }
}
