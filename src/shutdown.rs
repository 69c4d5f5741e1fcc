//! Shutdown: the request to stop (SIGTERM, Ctrl-C or a test's drop) and the drain that
//! follows it.
//!
//! The order, owned here and used by `serve` and the tests alike:
//! 1. [`Shutdown::trigger`] (or a signal after [`Shutdown::on_signals`]) asks to stop;
//! 2. the accept loop stops accepting, `/readyz` answers 503 (the gateway is draining);
//! 3. [`drain`] gives in-flight deliveries the drain timeout to finish;
//! 4. past it, the unfinished ones are aborted: they release their idempotency keys (a retry
//!    is forwarded again) and answer 503, given [`ABORT_GRACE`] to do so;
//! 5. the queue workers and the admin listener stop; `serve` exits 0.

use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// After the drain timeout, how long the released deliveries get to send their 503s.
pub const ABORT_GRACE: Duration = Duration::from_secs(5);

/// The request to stop, shared by whoever may ask and whoever must obey: cloning shares it.
/// Dropping every clone counts as asking.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown(Arc::new(watch::Sender::new(false)))
    }

    /// Asks to stop; asking twice is asking once.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Whether stopping was asked for.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once stopping is asked for.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut asked = self.0.subscribe();
        async move {
            // An error means every `Shutdown` is gone: nobody is left to ask, so stop.
            let _ = asked.wait_for(|asked| *asked).await;
        }
    }

    /// Asks to stop on SIGTERM or Ctrl-C. The handlers are installed before this returns, so a
    /// signal sent once the caller has announced itself is never missed.
    pub fn on_signals(&self) -> std::io::Result<()> {
        let this = self.clone();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
                tracing::info!("shutdown requested");
                this.trigger();
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown requested");
            this.trigger();
        });
        Ok(())
    }
}

/// Waits for the connections of `graceful` (already told to finish) to close. Past
/// `timeout`, calls `abort` — the unfinished deliveries release their keys and answer 503 —
/// and waits [`ABORT_GRACE`] more before giving up on the rest.
pub async fn drain(graceful: GracefulShutdown, timeout: Duration, abort: impl FnOnce()) {
    let drain = graceful.shutdown();
    tokio::pin!(drain);
    tokio::select! {
        _ = &mut drain => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(timeout) => {
            tracing::warn!("drain timeout reached; releasing the keys of unfinished deliveries");
            abort();
            if tokio::time::timeout(ABORT_GRACE, &mut drain).await.is_err() {
                tracing::warn!("connections still open after the drain; closing");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Shutdown;

    #[tokio::test]
    async fn a_trigger_reaches_every_clone_and_dropping_them_all_counts_as_one() {
        let s = Shutdown::new();
        let asked = s.requested();
        assert!(!s.is_triggered());
        s.clone().trigger();
        asked.await;
        assert!(s.is_triggered());
        let orphan = Shutdown::new().requested();
        tokio::time::timeout(std::time::Duration::from_secs(1), orphan).await.unwrap();
    }
}
