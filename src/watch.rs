//! Watches the files the configuration was read from (the configuration itself, its
//! `secret_files`, the TLS certificate and key) and reloads when their contents change.
//!
//! The directories holding them are watched, not the files: Kubernetes updates a mounted
//! secret by swapping a `..data` symlink in the directory, and editors and cert-manager
//! replace files by renaming, so a watch on the old file would see nothing. An event only
//! wakes the watcher: once the directory has been quiet for the debounce, the files' contents
//! are hashed and the gateway reloads only when the hash changed (an editor's temporary file
//! or an unrelated file in the same directory reloads nothing).

use crate::reload::Reloader;
use notify::Watcher;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the watched directories must be quiet before the files are read.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The longest a stream of events can hold a reload back.
const MAX_HOLD: Duration = Duration::from_secs(3);

/// Starts watching `reloader`'s files; runs until the gateway stops. An error means the
/// platform cannot watch (reloads by SIGHUP and the admin API still work).
pub fn spawn(reloader: Arc<Reloader>, debounce: Duration) -> notify::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    // notify calls this on its own thread; a full channel already holds a wake-up.
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.try_send(());
        }
    })?;
    let mut dirs = BTreeSet::new();
    rewatch(&mut watcher, &mut dirs, &reloader.watched_files());
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            let start = tokio::time::Instant::now();
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) if start.elapsed() < MAX_HOLD => continue,
                    Ok(None) => return,
                    _ => break,
                }
            }
            if !reloader.files_changed() {
                continue;
            }
            match reloader.reload("a watched file changed").await {
                Ok(_) => rewatch(&mut watcher, &mut dirs, &reloader.watched_files()),
                // The running configuration stays; the next change is tried again.
                Err(e) if e == crate::reload::STOPPED => return,
                Err(_) => {}
            }
        }
    });
    Ok(())
}

/// Watches the directories of `files` (and no others).
fn rewatch(watcher: &mut impl Watcher, dirs: &mut BTreeSet<PathBuf>, files: &[PathBuf]) {
    let wanted: BTreeSet<PathBuf> = files.iter().map(|f| parent(f)).collect();
    for gone in dirs.difference(&wanted) {
        let _ = watcher.unwatch(gone);
    }
    for new in wanted.difference(dirs) {
        if let Err(e) = watcher.watch(new, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %new.display(), error = %e, "cannot watch for changes; reload with SIGHUP");
        }
    }
    *dirs = wanted;
}

fn parent(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_the_working_directory_is_watched_there() {
        assert_eq!(parent(Path::new("config.yaml")), PathBuf::from("."));
        assert_eq!(parent(Path::new("/etc/p/config.yaml")), PathBuf::from("/etc/p"));
    }
}
