//! The `db` capability: the `DbExecutor` trait the host calls (implemented
//! for SQLite, PostgreSQL and MySQL/MariaDB by [`super::sql::SqlExecutor`]),
//! and the per-call state that makes one call's statements commit together,
//! at most once per idempotency key.
//!
//! Every granted connection used by a call gets one transaction, opened by
//! the first statement. Opening it inserts the call's idempotency key into
//! `hookwise_effects`; if the key is already there, the effects were committed
//! by an earlier attempt, nothing is applied and every statement answers
//! `{"already_applied":true}`. Statements run inside the transaction (so
//! plugins see rows and counts), and the transaction commits only when the
//! call succeeds. A failing statement rolls everything back at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use super::limits::truncate_string;

/// A boxed future, so that the traits below stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Time one statement (or commit) may take.
pub(crate) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest SQL text kept in a statement record.
const MAX_RECORDED_SQL: usize = 1024;

/// Errors of the database capability.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("connection {0:?} is not configured")]
    UnknownConnection(String),
    #[error(
        "unsupported database URL scheme {0:?} (use sqlite:, postgres://, postgresql://, mysql:// or mariadb://)"
    )]
    UnsupportedUrl(String),
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    #[error("statement timed out")]
    Timeout,
    /// A result column whose value has no JSON mapping.
    #[error("column {column:?}: {message}")]
    Column { column: String, message: String },
    #[error("idempotency key is longer than {max_bytes} bytes")]
    KeyTooLong { max_bytes: usize },
    /// The statement is not one a plugin may run; nothing was sent.
    #[error(transparent)]
    Refused(#[from] super::sql::Refused),
    /// The host could not arm or disarm a connection's guard.
    #[error("database guard: {0}")]
    Guard(String),
}

/// Result of opening a call's transaction on one connection.
pub enum DbBegin {
    /// A transaction holding the new idempotency-key row.
    Open(Box<dyn DbTransaction>),
    /// The key is already in `hookwise_effects`: apply nothing.
    AlreadyApplied,
}

/// Rows or a count produced by one statement.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DbOutput {
    pub rows: Vec<Map<String, Value>>,
    pub rows_affected: u64,
    /// More rows existed than the per-statement row limit.
    pub truncated: bool,
}

/// What the host needs from a database: the engine implements it with sqlx
/// for SQLite, PostgreSQL and MySQL.
pub trait DbExecutor: Send + Sync + 'static {
    /// Opens the transaction of one call on `connection` and inserts
    /// `idempotency_key` into `hookwise_effects` inside it.
    fn begin<'a>(
        &'a self,
        connection: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<DbBegin, DbError>>;
}

/// An open transaction of one call on one connection.
pub trait DbTransaction: Send {
    /// Runs one statement with JSON values bound to its placeholders.
    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value],
        max_rows: usize,
    ) -> BoxFuture<'a, Result<DbOutput, DbError>>;

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), DbError>>;

    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), DbError>>;
}

/// What happened to one statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum DbStatementOutcome {
    Ok {
        rows: usize,
        rows_affected: u64,
    },
    /// Skipped: this call's effects were committed by an earlier attempt.
    AlreadyApplied,
    Failed {
        error: String,
    },
    /// Not run: connection not granted, bad parameters, limit reached, a
    /// statement plugins may not run, or the transaction had already failed.
    Refused {
        reason: String,
    },
}

/// One SQL statement a plugin asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbStatementRecord {
    pub connection: String,
    /// The SQL text (first KiB); parameters are never recorded.
    pub sql: String,
    pub params: usize,
    pub outcome: DbStatementOutcome,
    pub duration: Duration,
}

/// What happened to the transaction of one connection at the end of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum DbTransactionOutcome {
    Committed,
    AlreadyApplied,
    RolledBack,
    CommitFailed { error: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbTransactionRecord {
    pub connection: String,
    pub outcome: DbTransactionOutcome,
}

enum Session {
    Open(Box<dyn DbTransaction>),
    AlreadyApplied,
    /// Rolled back after this error; later statements are refused.
    Failed(String),
}

/// The `db` state of one call.
pub(crate) struct DbCallState {
    executor: Option<Arc<dyn DbExecutor>>,
    grants: Arc<Vec<String>>,
    idempotency_key: String,
    max_statements: usize,
    max_rows: usize,
    sessions: Vec<(String, Session)>,
    records: Vec<DbStatementRecord>,
}

/// Result of finishing a call's transactions.
pub(crate) struct DbFinish {
    pub(crate) statements: Vec<DbStatementRecord>,
    pub(crate) transactions: Vec<DbTransactionRecord>,
    /// Set when the call must not count as a success (a statement failed, or
    /// a commit failed).
    pub(crate) error: Option<String>,
}

impl DbCallState {
    pub(crate) fn new(
        executor: Option<Arc<dyn DbExecutor>>,
        grants: Arc<Vec<String>>,
        idempotency_key: &str,
        max_statements: usize,
        max_rows: usize,
    ) -> Self {
        Self {
            executor,
            grants,
            idempotency_key: idempotency_key.to_string(),
            max_statements,
            max_rows,
            sessions: Vec::new(),
            records: Vec::new(),
        }
    }

    fn record(
        &mut self,
        connection: &str,
        sql: &str,
        params: usize,
        outcome: DbStatementOutcome,
        started: Instant,
    ) {
        self.records.push(DbStatementRecord {
            connection: connection.to_string(),
            sql: truncate_string(sql.to_string(), MAX_RECORDED_SQL),
            params,
            outcome,
            duration: started.elapsed(),
        });
    }

    fn refuse(
        &mut self,
        connection: &str,
        sql: &str,
        params: usize,
        reason: String,
        started: Instant,
    ) -> Result<String, String> {
        self.record(
            connection,
            sql,
            params,
            DbStatementOutcome::Refused {
                reason: reason.clone(),
            },
            started,
        );
        Err(reason)
    }

    /// The `db.execute` import.
    pub(crate) async fn execute(
        &mut self,
        connection: String,
        sql: String,
        params: String,
    ) -> Result<String, String> {
        let started = Instant::now();
        let params: Vec<Value> = match serde_json::from_str::<Value>(&params) {
            Ok(Value::Array(values)) => values,
            Ok(_) | Err(_) => {
                return self.refuse(
                    &connection,
                    &sql,
                    0,
                    "params must be a JSON array".to_string(),
                    started,
                );
            }
        };
        if !self.grants.contains(&connection) {
            let reason = format!("connection {connection:?} is not granted to this plugin");
            return self.refuse(&connection, &sql, params.len(), reason, started);
        }
        if self.records.len() >= self.max_statements {
            let reason = format!(
                "statement limit of {} per call reached",
                self.max_statements
            );
            // Only the first refusal past the limit is recorded, so a plugin
            // looping on statements cannot grow the record list.
            if self.records.len() > self.max_statements {
                return Err(reason);
            }
            return self.refuse(&connection, &sql, params.len(), reason, started);
        }
        let Some(executor) = self.executor.clone() else {
            let reason = "no database is configured on this host".to_string();
            return self.refuse(&connection, &sql, params.len(), reason, started);
        };
        let existing = self.sessions.iter().position(|(c, _)| *c == connection);
        let index = match existing {
            Some(i) => i,
            None => {
                let begun = tokio::time::timeout(
                    STATEMENT_TIMEOUT,
                    executor.begin(&connection, &self.idempotency_key),
                )
                .await
                .unwrap_or(Err(DbError::Timeout));
                let session = match begun {
                    Ok(DbBegin::Open(tx)) => Session::Open(tx),
                    Ok(DbBegin::AlreadyApplied) => Session::AlreadyApplied,
                    Err(e) => Session::Failed(e.to_string()),
                };
                self.sessions.push((connection.clone(), session));
                self.sessions.len() - 1
            }
        };
        let max_rows = self.max_rows;
        let session = &mut self.sessions[index].1;
        let (result, outcome) = match session {
            Session::AlreadyApplied => (
                Ok(r#"{"already_applied":true}"#.to_string()),
                DbStatementOutcome::AlreadyApplied,
            ),
            Session::Failed(error) => {
                let reason =
                    format!("the transaction was rolled back after an earlier error: {error}");
                (Err(reason.clone()), DbStatementOutcome::Refused { reason })
            }
            Session::Open(tx) => {
                let ran =
                    tokio::time::timeout(STATEMENT_TIMEOUT, tx.execute(&sql, &params, max_rows))
                        .await
                        .unwrap_or(Err(DbError::Timeout));
                match ran {
                    Ok(output) => {
                        let outcome = DbStatementOutcome::Ok {
                            rows: output.rows.len(),
                            rows_affected: output.rows_affected,
                        };
                        let json = serde_json::to_string(&output).map_err(|e| e.to_string());
                        (json, outcome)
                    }
                    Err(e) => {
                        let error = e.to_string();
                        if let Session::Open(tx) =
                            std::mem::replace(session, Session::Failed(error.clone()))
                        {
                            // The error the plugin sees is the statement's; a
                            // failed rollback only means the connection dropped
                            // the transaction already.
                            let _ = tokio::time::timeout(STATEMENT_TIMEOUT, tx.rollback()).await;
                        }
                        // A refused statement rolls back like a failing one, and is
                        // recorded as refused: it never reached the database.
                        let outcome = match e {
                            DbError::Refused(_) => DbStatementOutcome::Refused {
                                reason: error.clone(),
                            },
                            _ => DbStatementOutcome::Failed {
                                error: error.clone(),
                            },
                        };
                        (Err(error), outcome)
                    }
                }
            }
        };
        self.record(&connection, &sql, params.len(), outcome, started);
        result
    }

    /// Commits (when `success`) or rolls back every transaction of the call.
    pub(crate) async fn finish(self, success: bool) -> DbFinish {
        let failed = self.sessions.iter().find_map(|(c, s)| match s {
            Session::Failed(e) => Some(format!("database statement on {c:?} failed: {e}")),
            _ => None,
        });
        let commit = success && failed.is_none();
        let mut error = if success { failed } else { None };
        let mut transactions = Vec::new();
        for (connection, session) in self.sessions {
            let outcome = match session {
                Session::AlreadyApplied => DbTransactionOutcome::AlreadyApplied,
                Session::Failed(_) => DbTransactionOutcome::RolledBack,
                Session::Open(tx) if commit => {
                    match tokio::time::timeout(STATEMENT_TIMEOUT, tx.commit())
                        .await
                        .unwrap_or(Err(DbError::Timeout))
                    {
                        Ok(()) => DbTransactionOutcome::Committed,
                        Err(e) => {
                            let msg = e.to_string();
                            error.get_or_insert_with(|| {
                                format!("commit on {connection:?} failed: {msg}")
                            });
                            DbTransactionOutcome::CommitFailed { error: msg }
                        }
                    }
                }
                Session::Open(tx) => {
                    let _ = tokio::time::timeout(STATEMENT_TIMEOUT, tx.rollback()).await;
                    DbTransactionOutcome::RolledBack
                }
            };
            transactions.push(DbTransactionRecord {
                connection,
                outcome,
            });
        }
        DbFinish {
            statements: self.records,
            transactions,
            error,
        }
    }
}
