//! The one place the gateway reads the wall clock: Unix seconds now, or a fixed time in tests.

use std::time::{SystemTime, UNIX_EPOCH};

/// Where "now" comes from; tests fix it.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Fixed(u64),
}

impl Clock {
    /// Unix seconds.
    pub fn now(&self) -> u64 {
        match self {
            Clock::System => now(),
            Clock::Fixed(t) => *t,
        }
    }
}

/// The system's time, in Unix seconds (0 before 1970).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The system's time, in Unix milliseconds (0 before 1970): leases and queue due times.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
