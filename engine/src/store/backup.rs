//! `hookwise backup`: a consistent copy of a SQLite store, taken while a server writes to it.
//!
//! `VACUUM INTO` reads the whole database in one read transaction, so the copy is one
//! snapshot: every event committed before it started, none half-written. With the store's WAL
//! journal the server's writer carries on meanwhile; its checkpoints (PASSIVE) cannot shrink
//! the WAL past the snapshot until the copy ends, so the WAL grows for that long. The copy is
//! written under a temporary name beside the target, made a single self-contained file
//! (rollback journal, no `-wal`) readable by its owner only, checked, synced, and only then
//! given the target's name, which must not exist: an interrupted backup never leaves a file
//! that looks like a backup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long the copy waits for a lock (a server's checkpoint or write) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    /// Size of the copy.
    pub bytes: u64,
    /// Events in the copy.
    pub events: i64,
}

/// Why a backup was not written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("`{0}` already exists; a backup never overwrites a file: name a new one")]
    Exists(PathBuf),
    #[error("there is no SQLite store at `{0}`")]
    NoStore(PathBuf),
    #[error("`{0}` is not a hookwise store (it has no events table)")]
    NotAStore(PathBuf),
    #[error("copying `{path}`: {source}")]
    Copy {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("checking the copy: {0}")]
    Check(rusqlite::Error),
    #[error("the copy failed SQLite's check: {0}")]
    Corrupt(String),
    #[error("writing `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Copies the SQLite store at `store` into the new file `target`, consistently, while other
/// connections may be writing to it. Blocks (run it off async workers).
pub fn backup_sqlite(store: &Path, target: &Path) -> Result<BackupReport, BackupError> {
    if target.symlink_metadata().is_ok() {
        return Err(BackupError::Exists(target.to_path_buf()));
    }
    if !store.is_file() {
        return Err(BackupError::NoStore(store.to_path_buf()));
    }
    let partial = partial_name(target);
    let result = copy_checked(store, &partial).and_then(|report| {
        publish(&partial, target)?;
        Ok(BackupReport {
            path: target.to_path_buf(),
            ..report
        })
    });
    // Gone after a successful publish (renamed) or kept only by a failure: never left behind.
    let _ = std::fs::remove_file(&partial);
    result
}

/// `.NAME.partial` beside `target`.
fn partial_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".to_string());
    target.with_file_name(format!(".{name}.partial"))
}

/// Writes the copy to `partial` and checks it.
fn copy_checked(store: &Path, partial: &Path) -> Result<BackupReport, BackupError> {
    let io = |source| BackupError::Io {
        path: partial.to_path_buf(),
        source,
    };
    // A stale partial copy from an interrupted run is ours to replace; VACUUM INTO refuses a
    // file with anything in it.
    match std::fs::remove_file(partial) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let copy_err = |source| BackupError::Copy {
        path: store.to_path_buf(),
        source,
    };
    // Read-write (never created): the WAL's shared memory needs writing even to read.
    let source = Connection::open_with_flags(
        store,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(copy_err)?;
    source.busy_timeout(BUSY_TIMEOUT).map_err(copy_err)?;
    let has_events: bool = source
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events')",
            [],
            |row| row.get(0),
        )
        .map_err(copy_err)?;
    if !has_events {
        return Err(BackupError::NotAStore(store.to_path_buf()));
    }
    let into = partial.to_string_lossy().into_owned();
    source
        .execute("VACUUM INTO ?1", [&into])
        .map_err(copy_err)?;
    drop(source);

    let copy = Connection::open_with_flags(
        partial,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(BackupError::Check)?;
    // One file, whatever journal the copy inherited: nothing beside it to lose in a move.
    let _: String = copy
        .query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))
        .map_err(BackupError::Check)?;
    let verdict: String = copy
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(BackupError::Check)?;
    if verdict != "ok" {
        return Err(BackupError::Corrupt(verdict));
    }
    let events: i64 = copy
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .map_err(BackupError::Check)?;
    drop(copy);
    // Every payload is in it: for its owner's eyes only, whatever the umask.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(partial, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    let bytes = std::fs::metadata(partial).map_err(io)?.len();
    Ok(BackupReport {
        path: partial.to_path_buf(),
        bytes,
        events,
    })
}

/// Gives the checked copy the target's name, never replacing a file that appeared there
/// meanwhile (a hard link fails when the name exists), and syncs the folder.
fn publish(partial: &Path, target: &Path) -> Result<(), BackupError> {
    let io = |source| BackupError::Io {
        path: target.to_path_buf(),
        source,
    };
    match std::fs::hard_link(partial, target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(BackupError::Exists(target.to_path_buf()));
        }
        // File systems without hard links: check, then rename.
        Err(_) if target.symlink_metadata().is_err() => {
            std::fs::rename(partial, target).map_err(io)?;
        }
        Err(_) => return Err(BackupError::Exists(target.to_path_buf())),
    }
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Makes the new name durable; some platforms cannot open a folder, and the file itself
    // is synced already.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_events(path: &Path, n: i64) {
        let conn = Connection::open(path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute_batch("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT);")
            .unwrap();
        for i in 0..n {
            conn.execute("INSERT INTO events (body) VALUES (?1)", [format!("e{i}")])
                .unwrap();
        }
    }

    #[test]
    fn copies_into_a_new_file_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("hookwise.db");
        store_with_events(&store, 7);
        let target = dir.path().join("copy.db");
        let report = backup_sqlite(&store, &target).unwrap();
        assert_eq!(report.events, 7);
        assert_eq!(report.bytes, std::fs::metadata(&target).unwrap().len());
        assert!(!partial_name(&target).exists());
        // A single file: no WAL beside it.
        assert!(!dir.path().join("copy.db-wal").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        std::fs::write(dir.path().join("taken.db"), "mine").unwrap();
        let again = backup_sqlite(&store, &dir.path().join("taken.db"));
        assert!(matches!(again, Err(BackupError::Exists(_))), "{again:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("taken.db")).unwrap(),
            "mine"
        );
        let missing = backup_sqlite(&dir.path().join("nope.db"), &dir.path().join("x.db"));
        assert!(
            matches!(missing, Err(BackupError::NoStore(_))),
            "{missing:?}"
        );
        assert!(!dir.path().join("nope.db").exists());
    }

    #[test]
    fn refuses_a_database_that_is_not_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER);")
            .unwrap();
        let target = dir.path().join("copy.db");
        let result = backup_sqlite(&other, &target);
        assert!(
            matches!(result, Err(BackupError::NotAStore(_))),
            "{result:?}"
        );
        assert!(!target.exists());
        assert!(!partial_name(&target).exists());
    }
}
