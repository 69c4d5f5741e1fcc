//! What the stores' backends share with the queue's: the error of a store call, its time
//! bound, and the connections to the outside stores.
//!
//! - [`redis_pool`]: the Redis connections the Redis store and the Redis queue send on;
//! - [`redb_file`]: the redb file handling of the embedded store and the embedded queue;
//! - [`group_commit`]: the one writer per redb file, one transaction and one commit per batch;
//! - [`redo`]: the log that makes a batch durable with one small `fdatasync`.

pub mod group_commit;
pub mod redb_file;
pub mod redis_pool;
pub mod redo;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed store call.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A failed store (or queue) call.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the store holds its maximum of {0} keys")]
    Full(usize),
    #[error("store backend: {0}")]
    Backend(String),
}

/// Bounds a store call by `limit`.
pub async fn bounded<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Timeout(limit)),
    }
}
