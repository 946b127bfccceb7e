//! SQLite's own guard for plugin statements: an authorizer callback, installed on each
//! connection the first time a plugin call uses it, that lets an armed connection compile
//! only data statements on the granted database, and a limit of zero attached databases.
//!
//! A connection is armed after the host has opened the call's transaction and claimed its
//! idempotency key, and disarmed before the host commits or rolls back, so the host's own
//! statements (BEGIN, the `hookwise_effects` claim, COMMIT) pass and no plugin statement
//! does. Arming and disarming happen while the connection's handle is locked
//! (`lock_handle`), which sqlx orders after every command sent to the connection before:
//! a plugin statement that is still being prepared when its call is cancelled is judged
//! armed.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;

use super::guard::{self, EFFECTS_TABLE};

/// Name under which a connection keeps its guard (`sqlite3_set_clientdata`).
const CLIENT_DATA: &CStr = c"hookwise.plugin_guard";

/// The guard of one SQLite connection.
#[derive(Debug, Default)]
pub(super) struct SqliteGuard {
    armed: AtomicBool,
    /// What the authorizer refused last, for a clearer error than SQLite's "not authorized".
    denied: Mutex<Option<String>>,
}

/// Errors installing or switching the guard.
#[derive(Debug, thiserror::Error)]
pub(super) enum GuardError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("SQLite refused to install the plugin guard (code {0})")]
    Install(c_int),
}

/// What a connection was found in when a call took it.
pub(super) struct Prepared {
    pub(super) guard: Arc<SqliteGuard>,
    /// False when an earlier call's transaction is still open on it (its rollback could not
    /// run): such a connection must be closed, not used.
    pub(super) clean: bool,
}

impl SqliteGuard {
    /// The refusal the authorizer recorded since the last call, if any.
    pub(super) fn take_denied(&self) -> Option<String> {
        self.denied.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn deny(&self, why: String) {
        *self.denied.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }
}

/// Installs the guard on `conn` if it has none, disarms it, and says whether the
/// connection is outside any transaction.
pub(super) async fn prepare(conn: &mut SqliteConnection) -> Result<Prepared, GuardError> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let guard = installed(db)?;
    guard.armed.store(false, Ordering::SeqCst);
    // SAFETY: `db` is the live handle this lock gives exclusive use of.
    let clean = unsafe { ffi::sqlite3_get_autocommit(db) } != 0;
    Ok(Prepared { guard, clean })
}

/// Arms (plugin statements follow) or disarms (the host's statements follow) `conn`.
pub(super) async fn set_armed(
    conn: &mut SqliteConnection,
    guard: &SqliteGuard,
    armed: bool,
) -> Result<(), sqlx::Error> {
    // Locking waits until the connection's worker has finished every command sent before.
    let _handle = conn.lock_handle().await?;
    guard.armed.store(armed, Ordering::SeqCst);
    Ok(())
}

/// The guard kept by `db`, installed on first use.
fn installed(db: *mut ffi::sqlite3) -> Result<Arc<SqliteGuard>, GuardError> {
    // SAFETY: `db` is a live connection handle locked by the caller. The client data under
    // CLIENT_DATA is only ever a pointer made by `Arc::into_raw` below; it keeps one strong
    // count, which `release` gives back when the connection closes.
    unsafe {
        let existing = ffi::sqlite3_get_clientdata(db, CLIENT_DATA.as_ptr());
        if !existing.is_null() {
            let ptr = existing as *const SqliteGuard;
            Arc::increment_strong_count(ptr);
            return Ok(Arc::from_raw(ptr));
        }
        let guard = Arc::new(SqliteGuard::default());
        let raw = Arc::into_raw(guard.clone()) as *mut c_void;
        // On failure SQLite calls `release` on `raw` itself.
        let rc = ffi::sqlite3_set_clientdata(db, CLIENT_DATA.as_ptr(), raw, Some(release));
        if rc != ffi::SQLITE_OK {
            return Err(GuardError::Install(rc));
        }
        // The connection owns `raw` from here until it closes, after which the authorizer
        // is never called again.
        let rc = ffi::sqlite3_set_authorizer(db, Some(authorize), raw);
        if rc != ffi::SQLITE_OK {
            return Err(GuardError::Install(rc));
        }
        ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_ATTACHED, 0);
        Ok(guard)
    }
}

/// Client-data destructor: gives back the strong count the connection held.
unsafe extern "C" fn release(ptr: *mut c_void) {
    if !ptr.is_null() {
        // SAFETY: `ptr` came from `Arc::into_raw` in `installed`, once.
        drop(unsafe { Arc::from_raw(ptr as *const SqliteGuard) });
    }
}

/// The authorizer callback (`sqlite3_set_authorizer`); SQLite calls it while it compiles
/// a statement.
unsafe extern "C" fn authorize(
    user: *mut c_void,
    action: c_int,
    arg3: *const c_char,
    arg4: *const c_char,
    _database: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    // SAFETY: `user` is the guard installed with this callback, alive while the connection is.
    let guard = unsafe { &*(user as *const SqliteGuard) };
    if !guard.armed.load(Ordering::SeqCst) {
        return ffi::SQLITE_OK;
    }
    // SAFETY: SQLite passes NUL-terminated strings or null.
    let (arg3, arg4) = unsafe { (text(arg3), text(arg4)) };
    match decide(action, arg3.as_deref(), arg4.as_deref()) {
        Ok(()) => ffi::SQLITE_OK,
        Err(why) => {
            guard.deny(why);
            ffi::SQLITE_DENY
        }
    }
}

/// # Safety
/// `ptr` is null or points to a NUL-terminated string.
unsafe fn text(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: as the function's contract says.
        Some(
            unsafe { CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Whether an armed connection may compile `action` (SQLite's action code with its third
/// and fourth arguments); `Err` says why not.
fn decide(action: c_int, arg3: Option<&str>, arg4: Option<&str>) -> Result<(), String> {
    let effects =
        |table: Option<&str>| table.is_some_and(|t| t.eq_ignore_ascii_case(EFFECTS_TABLE));
    match action {
        ffi::SQLITE_SELECT | ffi::SQLITE_RECURSIVE => Ok(()),
        ffi::SQLITE_READ if effects(arg3) => Err(format!(
            "{EFFECTS_TABLE} belongs to the host and cannot be read"
        )),
        ffi::SQLITE_READ => Ok(()),
        ffi::SQLITE_INSERT | ffi::SQLITE_UPDATE | ffi::SQLITE_DELETE => {
            let table = arg3.unwrap_or_default();
            if effects(arg3) {
                Err(format!(
                    "{EFFECTS_TABLE} belongs to the host and cannot be written"
                ))
            } else if table.to_ascii_lowercase().starts_with("sqlite_") {
                Err(format!("{table} is SQLite's own table"))
            } else {
                Ok(())
            }
        }
        ffi::SQLITE_FUNCTION => {
            let name = arg4.unwrap_or_default().to_ascii_lowercase();
            if guard::is_denied_function(&name) {
                Err(format!("{name}() reaches outside the granted data"))
            } else {
                Ok(())
            }
        }
        other => Err(format!(
            "{} is not a data statement",
            action_name(other, arg3)
        )),
    }
}

/// What a refused action is called in errors.
fn action_name(action: c_int, arg3: Option<&str>) -> String {
    let name = match action {
        ffi::SQLITE_TRANSACTION => return arg3.unwrap_or("a transaction statement").to_string(),
        ffi::SQLITE_PRAGMA => "PRAGMA",
        ffi::SQLITE_ATTACH => "ATTACH",
        ffi::SQLITE_DETACH => "DETACH",
        ffi::SQLITE_SAVEPOINT => "SAVEPOINT",
        ffi::SQLITE_ALTER_TABLE => "ALTER TABLE",
        ffi::SQLITE_REINDEX => "REINDEX",
        ffi::SQLITE_ANALYZE => "ANALYZE",
        ffi::SQLITE_CREATE_VTABLE | ffi::SQLITE_DROP_VTABLE => "a virtual table",
        ffi::SQLITE_CREATE_INDEX
        | ffi::SQLITE_CREATE_TABLE
        | ffi::SQLITE_CREATE_TEMP_INDEX
        | ffi::SQLITE_CREATE_TEMP_TABLE
        | ffi::SQLITE_CREATE_TEMP_TRIGGER
        | ffi::SQLITE_CREATE_TEMP_VIEW
        | ffi::SQLITE_CREATE_TRIGGER
        | ffi::SQLITE_CREATE_VIEW => "CREATE",
        ffi::SQLITE_DROP_INDEX
        | ffi::SQLITE_DROP_TABLE
        | ffi::SQLITE_DROP_TEMP_INDEX
        | ffi::SQLITE_DROP_TEMP_TABLE
        | ffi::SQLITE_DROP_TEMP_TRIGGER
        | ffi::SQLITE_DROP_TEMP_VIEW
        | ffi::SQLITE_DROP_TRIGGER
        | ffi::SQLITE_DROP_VIEW => "DROP",
        _ => return format!("SQLite action {action}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, Executor};

    /// The engine's guard on its own, on a real file, with no statement checked before:
    /// armed, the connection compiles only data statements; disarmed, the host's run.
    #[tokio::test]
    async fn an_armed_connection_refuses_what_the_authorizer_denies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display());
        let other = dir.path().join("other.db").display().to_string();
        let mut conn = SqliteConnection::connect(&url).await.expect("connect");
        conn.execute("CREATE TABLE hookwise_effects (idempotency_key TEXT PRIMARY KEY)")
            .await
            .expect("effects");
        conn.execute("CREATE TABLE items (name TEXT)")
            .await
            .expect("items");
        let prepared = prepare(&mut conn).await.expect("guard");
        assert!(prepared.clean);
        conn.execute("BEGIN").await.expect("host begins");
        conn.execute("INSERT INTO hookwise_effects VALUES ('k')")
            .await
            .expect("host claims");
        set_armed(&mut conn, &prepared.guard, true)
            .await
            .expect("arm");

        let attach = format!("ATTACH DATABASE '{other}' AS h");
        for sql in [
            attach.as_str(),
            "DELETE FROM hookwise_effects",
            "SELECT * FROM hookwise_effects",
            "INSERT INTO hookwise_effects VALUES ('forged')",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT s",
            "PRAGMA writable_schema = ON",
            "CREATE TABLE evil (a)",
            "DROP TABLE items",
            "SELECT load_extension('/tmp/x.so')",
        ] {
            let result = sqlx::query(sql).persistent(false).execute(&mut conn).await;
            assert!(result.is_err(), "armed connection ran {sql}");
            let denied = prepared.guard.take_denied();
            // ATTACH fails on the attach limit or the authorizer, whichever SQLite asks first.
            assert!(
                denied.is_some() || sql.starts_with("ATTACH"),
                "{sql}: {result:?}"
            );
        }
        sqlx::query("INSERT INTO items VALUES ('data')")
            .persistent(false)
            .execute(&mut conn)
            .await
            .expect("data statements pass");
        assert!(
            !std::path::Path::new(&other).exists(),
            "ATTACH created the other database"
        );

        set_armed(&mut conn, &prepared.guard, false)
            .await
            .expect("disarm");
        conn.execute("COMMIT").await.expect("host commits");
        let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hookwise_effects")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(keys, 1);
        // Even disarmed, no database can be attached.
        let attached = sqlx::query(&attach).execute(&mut conn).await;
        assert!(attached.is_err(), "{attached:?}");
    }

    #[test]
    fn data_actions_pass() {
        for (action, a3, a4) in [
            (ffi::SQLITE_SELECT, None, None),
            (ffi::SQLITE_RECURSIVE, None, None),
            (ffi::SQLITE_READ, Some("users"), Some("id")),
            (ffi::SQLITE_INSERT, Some("users"), None),
            (ffi::SQLITE_UPDATE, Some("users"), Some("name")),
            (ffi::SQLITE_DELETE, Some("users"), None),
            (ffi::SQLITE_FUNCTION, None, Some("lower")),
            (ffi::SQLITE_FUNCTION, None, Some("json_extract")),
        ] {
            assert_eq!(decide(action, a3, a4), Ok(()), "{action} {a3:?} {a4:?}");
        }
    }

    #[test]
    fn everything_else_is_denied() {
        for (action, a3, a4) in [
            (
                ffi::SQLITE_READ,
                Some("hookwise_effects"),
                Some("idempotency_key"),
            ),
            (ffi::SQLITE_DELETE, Some("HOOKWISE_EFFECTS"), None),
            (ffi::SQLITE_INSERT, Some("hookwise_effects"), None),
            (ffi::SQLITE_UPDATE, Some("sqlite_master"), Some("sql")),
            (ffi::SQLITE_INSERT, Some("sqlite_sequence"), None),
            (ffi::SQLITE_FUNCTION, None, Some("load_extension")),
            (ffi::SQLITE_FUNCTION, None, Some("LOAD_EXTENSION")),
            (ffi::SQLITE_FUNCTION, None, Some("writefile")),
            (ffi::SQLITE_ATTACH, Some("/tmp/x.db"), None),
            (ffi::SQLITE_DETACH, Some("h"), None),
            (ffi::SQLITE_PRAGMA, Some("writable_schema"), Some("1")),
            (ffi::SQLITE_TRANSACTION, Some("COMMIT"), None),
            (ffi::SQLITE_TRANSACTION, Some("ROLLBACK"), None),
            (ffi::SQLITE_SAVEPOINT, Some("BEGIN"), Some("s")),
            (ffi::SQLITE_CREATE_TABLE, Some("x"), None),
            (ffi::SQLITE_CREATE_TEMP_TRIGGER, Some("t"), Some("x")),
            (ffi::SQLITE_DROP_TABLE, Some("users"), None),
            (ffi::SQLITE_ALTER_TABLE, Some("main"), Some("users")),
            (ffi::SQLITE_CREATE_VTABLE, Some("v"), Some("fts5")),
            (ffi::SQLITE_ANALYZE, Some("users"), None),
            (ffi::SQLITE_REINDEX, Some("i"), None),
            (ffi::SQLITE_COPY, None, None),
            (9999, None, None),
        ] {
            assert!(
                decide(action, a3, a4).is_err(),
                "{action} {a3:?} {a4:?} passed"
            );
        }
        assert_eq!(
            decide(ffi::SQLITE_TRANSACTION, Some("COMMIT"), None),
            Err("COMMIT is not a data statement".to_string())
        );
    }
}
