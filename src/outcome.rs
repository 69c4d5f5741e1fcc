//! The outcome table: what happened to one request, the `outcome` label of logs and metrics.
//! A leaf: [`crate::metrics`] counts outcomes and [`crate::response`] decides them, and
//! neither has to import the other for it.

/// Declares [`Outcome`] from one table: each outcome with its label; its metric index is its
/// place in the table.
macro_rules! outcomes {
    ($($(#[$doc:meta])* $name:ident => $label:literal,)*) => {
        /// What happened to one request; the `outcome` label of logs and metrics.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Outcome {
            $($(#[$doc])* $name,)*
        }

        impl Outcome {
            /// Every outcome, in the order of their metric indexes.
            pub const ALL: [Outcome; [$($label),*].len()] = [$(Outcome::$name),*];

            /// The label in logs and metrics.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Outcome::$name => $label,)*
                }
            }
        }
    };
}

outcomes! {
    Forwarded => "forwarded",
    UpstreamError => "upstream_error",
    UpstreamUnavailable => "upstream_unavailable",
    UpstreamTimeout => "upstream_timeout",
    Duplicate => "duplicate",
    InFlight => "in_flight",
    InvalidSignature => "invalid_signature",
    BadRequest => "bad_request",
    StoreError => "store_error",
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    TooLarge => "too_large",
    BodyTimeout => "body_timeout",
    Handshake => "handshake",
    Replay => "replay",
    Draining => "draining",
    Overloaded => "overloaded",
    Forbidden => "forbidden",
    Queued => "queued",
    /// The delivery queue refused or did not confirm an append (a queued route).
    QueueError => "queue_error",
    /// A certificate-URL scheme's signing certificate could not be fetched (503).
    CertificateUnavailable => "certificate_unavailable",
    /// No destination of the route wanted the delivery (their `when:` filters): 200.
    Filtered => "filtered",
    /// A broker destination (NATS, RabbitMQ) did not accept the delivery: 503.
    DestinationUnavailable => "destination_unavailable",
    Panic => "internal_error",
}

impl Outcome {
    /// The outcome's counter among [`Outcome::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What one attempt of the queue's workers at a queued delivery came to: the `outcome` of the
/// attempt's event-log record and the label of `portcullis_queue_attempts_total`. Not request
/// outcomes (no request is answered by an attempt), so not in [`Outcome`], whose every label
/// is a series of `portcullis_requests_total`.
pub mod attempt {
    /// The upstream answered 2xx; the delivery left the queue.
    pub const DELIVERED: &str = "delivered";
    /// The attempt failed and the delivery waits for another.
    pub const RETRY: &str = "retry";
    /// The attempt failed and was the last: the delivery went to the dead-letter list.
    pub const DEAD: &str = "dead";
    /// Every attempt outcome.
    pub const ALL: [&str; 3] = [DELIVERED, RETRY, DEAD];
}

impl Outcome {
    /// Every `outcome` an event-log record can have: the request outcomes, then the queue's
    /// attempt outcomes (the console's outcome filter lists these).
    pub fn event_labels() -> impl Iterator<Item = &'static str> {
        Outcome::ALL.iter().map(|o| o.as_str()).chain(attempt::ALL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_table_indexes_every_outcome_once() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i, "{o:?}");
        }
        let labels: std::collections::HashSet<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(labels.len(), Outcome::ALL.len(), "labels are distinct");
        let all: std::collections::HashSet<_> = Outcome::event_labels().collect();
        assert_eq!(all.len(), Outcome::ALL.len() + attempt::ALL.len(), "attempt labels are distinct too");
    }
}
