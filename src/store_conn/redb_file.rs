//! The redb file handling that the embedded idempotency store and the embedded queue share:
//! opening (or creating) a file with its directory, and write transactions whose durability
//! is chosen per write (fsync before answering, or committed lazily).

use super::StoreError;
use redb::{Database, Durability, WriteTransaction};
use std::path::Path;

/// Opens (or creates) the database at `path`, creating its directory first; `err` names the
/// backend in the error.
pub fn open(path: &Path, err: fn(String) -> StoreError) -> Result<Database, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    Database::create(path).map_err(|e| err(format!("{}: {e}", path.display())))
}

/// A write transaction: `durable` ones are on disk (fsync) once committed; the others are
/// committed lazily, made durable by the next durable commit.
pub fn write(
    db: &Database,
    durable: bool,
    err: fn(String) -> StoreError,
) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write().map_err(|e| err(e.to_string()))?;
    txn.set_durability(if durable { Durability::Immediate } else { Durability::None })
        .map_err(|e| err(e.to_string()))?;
    Ok(txn)
}
