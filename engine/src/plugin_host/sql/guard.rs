//! What plugin SQL may do, checked before a statement reaches the database: one data
//! statement (SELECT, INSERT, UPDATE, DELETE, with their WITH/UPSERT/RETURNING forms) per
//! call, never `hookwise_effects`, never a function that reaches files, programs,
//! extensions, roles or session state.
//!
//! Statements are read with `sqlparser` in the connection's dialect. On PostgreSQL and
//! MySQL/MariaDB this check is the guard: the statement is parsed and only the data kinds
//! pass. On SQLite the engine itself guards as well (`sqlite_guard`: the authorizer callback,
//! no attached databases), and this check only gives the clear refusal first.

use std::ops::ControlFlow;

use sqlparser::ast::{Query, SetExpr, Statement, Visit, Visitor};
use sqlparser::dialect::{Dialect as SqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::Dialect;

/// The host's table of applied idempotency keys: never the plugin's.
pub(crate) const EFFECTS_TABLE: &str = "hookwise_effects";

/// Longest statement text checked; a plugin's SQL is a statement, not a data transfer
/// (values travel as parameters).
const MAX_SQL_BYTES: usize = 256 * 1024;

/// Words that may open a statement: the data statements and their WITH/VALUES/TABLE forms
/// (REPLACE is SQLite's and MySQL's upsert).
const DATA_KEYWORDS: [Keyword; 8] = [
    Keyword::SELECT,
    Keyword::INSERT,
    Keyword::UPDATE,
    Keyword::DELETE,
    Keyword::WITH,
    Keyword::VALUES,
    Keyword::REPLACE,
    Keyword::TABLE,
];

/// Functions that reach outside the granted data: files (`pg_read_file`, `load_file`,
/// `readfile`), programs and extensions (`load_extension`, `dblink`), large objects, roles
/// and settings (`set_config`), server control, locks that outlive the call, and functions
/// that run SQL given as text (`query_to_xml`, `ts_stat`), which would bypass every check
/// here. Compared case-insensitively with the last part of a called name.
const DENIED_FUNCTIONS: [&str; 38] = [
    // PostgreSQL
    "pg_read_file",
    "pg_read_binary_file",
    "pg_stat_file",
    "pg_logdir_ls",
    "set_config",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_promote",
    "pg_switch_wal",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_import_system_collations",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "ts_stat",
    "ts_rewrite",
    // MySQL / MariaDB
    "load_file",
    "sys_exec",
    "sys_eval",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "benchmark",
    // SQLite (also refused by its authorizer)
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
    "zipfile",
];

/// Name prefixes of denied function families: PostgreSQL's directory listings, adminpack's
/// file functions, large objects, dblink, replication and slots, and the `*_to_xml`
/// functions that run a query or read a table named in a string.
const DENIED_FUNCTION_PREFIXES: [&str; 13] = [
    "pg_ls_",
    "pg_file_",
    "lo_",
    "dblink",
    "pg_create_",
    "pg_drop_replication",
    "pg_replication_",
    "pg_logical_",
    "query_to_",
    "cursor_to_",
    "table_to_",
    "schema_to_",
    "database_to_",
];

/// Relations no plugin statement may name: the host's effects table, and PostgreSQL's
/// catalogs of password hashes and user mappings.
const DENIED_RELATIONS: [&str; 5] = [
    EFFECTS_TABLE,
    "pg_authid",
    "pg_shadow",
    "pg_user_mapping",
    "pg_user_mappings",
];

/// Words that make a statement read or write a server-side file (MySQL's `LOAD DATA
/// INFILE`, `SELECT ... INTO OUTFILE/DUMPFILE`).
const DENIED_WORDS: [&str; 3] = ["infile", "outfile", "dumpfile"];

/// Why a statement was refused; the text is what the plugin and the attempt record see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by the host: {0} (plugin SQL may run one SELECT, INSERT, UPDATE or DELETE)")]
pub struct Refused(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(why.into()))
}

/// Checks one plugin statement for `dialect`; `Ok` means it may be sent.
pub(crate) fn check(dialect: Dialect, sql: &str) -> Result<(), Refused> {
    if sql.len() > MAX_SQL_BYTES {
        return refuse(format!(
            "the statement is {} bytes, more than {MAX_SQL_BYTES}",
            sql.len()
        ));
    }
    check_text(dialect, sql)?;
    let sql_dialect = sql_dialect(dialect);
    let tokens = Tokenizer::new(sql_dialect.as_ref(), sql)
        .tokenize()
        .or_else(|e| refuse(format!("the statement cannot be read: {e}")))?;
    let statement = single_statement(&tokens)?;
    check_opening(statement)?;
    check_names(statement)?;
    match dialect {
        // SQLite's own parser and authorizer judge the rest (`sqlite_guard`); a second
        // parser here would only refuse valid SQLite.
        Dialect::Sqlite => Ok(()),
        Dialect::Postgres | Dialect::MySql => check_parsed(sql_dialect.as_ref(), tokens),
    }
}

fn sql_dialect(dialect: Dialect) -> Box<dyn SqlDialect> {
    match dialect {
        Dialect::Sqlite => Box::new(SQLiteDialect {}),
        Dialect::Postgres => Box::new(PostgreSqlDialect {}),
        Dialect::MySql => Box::new(MySqlDialect {}),
    }
}

/// Checks on the raw text, for what escapes could hide from the tokens: the effects table
/// named anywhere (a string naming it is as refused as an identifier), PostgreSQL's
/// Unicode-escaped names (`U&"..."`), MySQL's executable comments (`/*! ... */`), which the
/// server runs although a reader takes them for comments.
fn check_text(dialect: Dialect, sql: &str) -> Result<(), Refused> {
    let lower = sql.to_ascii_lowercase();
    if lower.contains(EFFECTS_TABLE) {
        return refuse(format!(
            "{EFFECTS_TABLE} belongs to the host and cannot be read or written"
        ));
    }
    if dialect == Dialect::Postgres {
        let compact: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains("u&\"") || compact.contains("u&'") {
            return refuse("Unicode-escaped names and strings (U&) are not accepted");
        }
    }
    if dialect == Dialect::MySql && (lower.contains("/*!") || lower.contains("/*m!")) {
        return refuse("executable comments (/*! ... */) are not accepted");
    }
    Ok(())
}

fn is_trivia(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_) | Token::EOF)
}

/// The tokens of the one statement in `tokens` (trailing semicolons allowed).
fn single_statement(tokens: &[Token]) -> Result<&[Token], Refused> {
    let mut statements = tokens
        .split(|t| *t == Token::SemiColon)
        .filter(|s| !s.iter().all(is_trivia));
    let Some(first) = statements.next() else {
        return refuse("the statement is empty");
    };
    if statements.next().is_some() {
        return refuse("several statements in one call; send them one at a time");
    }
    Ok(first)
}

/// The statement must open with a data keyword (or a parenthesis, for a parenthesised
/// query that the parser then checks).
fn check_opening(statement: &[Token]) -> Result<(), Refused> {
    match statement.iter().find(|t| !is_trivia(t)) {
        Some(Token::Word(w)) if w.quote_style.is_none() && DATA_KEYWORDS.contains(&w.keyword) => {
            Ok(())
        }
        Some(Token::LParen) => Ok(()),
        Some(Token::Word(w)) => refuse(format!(
            "{} is not a data statement",
            w.value.to_ascii_uppercase()
        )),
        Some(other) => refuse(format!("a statement cannot start with {other}")),
        None => refuse("the statement is empty"),
    }
}

/// Refused names: denied relations and words wherever they stand, denied functions where
/// a name is called (followed by `(`, comments and spaces aside).
fn check_names(statement: &[Token]) -> Result<(), Refused> {
    let significant: Vec<&Token> = statement.iter().filter(|t| !is_trivia(t)).collect();
    for (i, token) in significant.iter().enumerate() {
        let Token::Word(word) = token else { continue };
        let name = word.value.to_ascii_lowercase();
        if DENIED_RELATIONS.contains(&name.as_str()) {
            return refuse(format!("{name} cannot be read or written by plugins"));
        }
        if word.quote_style.is_none() && DENIED_WORDS.contains(&name.as_str()) {
            return refuse(format!(
                "{} reaches files on the database server",
                name.to_ascii_uppercase()
            ));
        }
        let called = matches!(significant.get(i + 1), Some(Token::LParen));
        if called && is_denied_function(&name) {
            return refuse(format!(
                "{name}() reaches outside the granted data (files, programs, roles, settings or SQL given as text)"
            ));
        }
    }
    Ok(())
}

pub(super) fn is_denied_function(name: &str) -> bool {
    DENIED_FUNCTIONS.contains(&name) || DENIED_FUNCTION_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// PostgreSQL and MySQL: the statement parses as one SELECT, INSERT, UPDATE or DELETE, and
/// no query in it is a `SELECT ... INTO` (which creates a table or writes a file).
fn check_parsed(dialect: &dyn SqlDialect, tokens: Vec<Token>) -> Result<(), Refused> {
    let statements = Parser::new(dialect)
        .with_tokens(tokens)
        .parse_statements()
        .or_else(|e| refuse(format!("the statement cannot be checked: {e}")))?;
    let [statement] = statements.as_slice() else {
        return refuse("several statements in one call; send them one at a time");
    };
    match statement {
        Statement::Query(_)
        | Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_) => {}
        other => {
            let text = other.to_string();
            let kind = text.split_whitespace().next().unwrap_or("this statement");
            return refuse(format!(
                "{} is not a data statement",
                kind.to_ascii_uppercase()
            ));
        }
    }
    let mut into = SelectIntoFinder;
    match statement.visit(&mut into) {
        ControlFlow::Break(()) => refuse("SELECT ... INTO creates a table or writes a file"),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Stops at the first query with a `SELECT ... INTO`.
struct SelectIntoFinder;

impl Visitor for SelectIntoFinder {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if has_select_into(&query.body) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn has_select_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.into.is_some(),
        SetExpr::SetOperation { left, right, .. } => {
            has_select_into(left) || has_select_into(right)
        }
        SetExpr::Query(query) => has_select_into(&query.body),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Dialect; 3] = [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql];

    fn refused(dialect: Dialect, sql: &str) -> bool {
        check(dialect, sql).is_err()
    }

    #[test]
    fn data_statements_pass_on_every_dialect() {
        for sql in [
            "SELECT 1",
            "select id, name from users where id = ?",
            "INSERT INTO t (a, b) VALUES (?, ?)",
            "UPDATE t SET a = ? WHERE b = ?",
            "DELETE FROM t WHERE a = ?",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "  -- a comment\n SELECT 1;",
            "/* leading */ SELECT 1 ;  ",
            "SELECT count(*), max(a), lower(b) FROM t GROUP BY c",
        ] {
            for dialect in ALL {
                let sql = if dialect == Dialect::Postgres {
                    sql.replace("= ?", "= $1").replace("?, ?", "$1, $2")
                } else {
                    sql.to_string()
                };
                assert_eq!(check(dialect, &sql), Ok(()), "{dialect:?}: {sql}");
            }
        }
    }

    #[test]
    fn dialect_forms_of_upsert_and_returning_pass() {
        let cases = [
            (
                Dialect::Postgres,
                "INSERT INTO t (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v RETURNING k",
            ),
            (
                Dialect::Postgres,
                "WITH moved AS (DELETE FROM a WHERE id = $1 RETURNING *) INSERT INTO b SELECT * FROM moved",
            ),
            (
                Dialect::Postgres,
                "UPDATE t SET v = v + 1 WHERE k = $1 RETURNING v",
            ),
            (Dialect::Postgres, "SELECT * FROM t FOR UPDATE SKIP LOCKED"),
            (Dialect::Postgres, "SELECT $$dollar ; quoted$$"),
            (
                Dialect::MySql,
                "INSERT INTO t (k, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)",
            ),
            (Dialect::MySql, "REPLACE INTO t (k, v) VALUES (?, ?)"),
            (
                Dialect::Sqlite,
                "INSERT INTO t (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v RETURNING k",
            ),
            (Dialect::Sqlite, "INSERT OR REPLACE INTO t VALUES (?, ?)"),
            (Dialect::Sqlite, "REPLACE INTO t VALUES (?, ?)"),
            (Dialect::Sqlite, "SELECT 'a;b', \"c;d\" FROM t"),
        ];
        for (dialect, sql) in cases {
            assert_eq!(check(dialect, sql), Ok(()), "{dialect:?}: {sql}");
        }
    }

    #[test]
    fn non_data_statements_are_refused_everywhere() {
        for sql in [
            "ATTACH DATABASE '/tmp/x.db' AS h",
            "DETACH DATABASE h",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT s",
            "RELEASE SAVEPOINT s",
            "PRAGMA writable_schema = 1",
            "VACUUM",
            "VACUUM INTO '/tmp/copy.db'",
            "CREATE TABLE x (a INT)",
            "DROP TABLE t",
            "ALTER TABLE t ADD COLUMN b INT",
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM t; END",
            "SET ROLE postgres",
            "RESET ROLE",
            "SET SESSION AUTHORIZATION postgres",
            "COPY t FROM PROGRAM 'id'",
            "COPY t TO '/tmp/out'",
            "LOAD DATA INFILE '/etc/passwd' INTO TABLE t",
            "GRANT ALL ON t TO PUBLIC",
            "TRUNCATE t",
            "EXPLAIN ANALYZE DELETE FROM t",
            "DO $$ BEGIN PERFORM 1; END $$",
            "CALL p()",
            "LOCK TABLE t",
            "LISTEN c",
            "SELECT 1; DELETE FROM t",
            "SELECT 1; SELECT 2",
            "",
            "  ;  ",
        ] {
            for dialect in ALL {
                assert!(refused(dialect, sql), "{dialect:?} let through: {sql}");
            }
        }
    }

    #[test]
    fn the_effects_table_is_refused_in_any_spelling() {
        for sql in [
            "DELETE FROM hookwise_effects",
            "SELECT * FROM HOOKWISE_EFFECTS",
            "SELECT * FROM \"hookwise_effects\"",
            "SELECT * FROM main.hookwise_effects",
            "SELECT * FROM `hookwise_effects`",
            "SELECT * FROM [hookwise_effects]",
            "WITH d AS (DELETE FROM hookwise_effects RETURNING *) SELECT 1",
            "SELECT table_to_xml('hookwise_effects', true, false, '')",
            "INSERT INTO t SELECT idempotency_key FROM hookwise_effects",
        ] {
            for dialect in ALL {
                let err = check(dialect, sql).err();
                assert!(err.is_some(), "{dialect:?} let through: {sql}");
            }
        }
        assert!(refused(
            Dialect::Postgres,
            "SELECT * FROM U&\"hookwise\\005feffects\""
        ));
        assert!(refused(
            Dialect::Postgres,
            "SELECT * FROM u & \"hookwise\\005feffects\""
        ));
    }

    #[test]
    fn functions_that_reach_outside_are_refused() {
        for sql in [
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT pg_catalog.pg_read_file('/etc/passwd')",
            "SELECT PG_READ_BINARY_FILE ('/etc/passwd')",
            "SELECT * FROM pg_ls_dir('.')",
            "SELECT lo_import('/etc/passwd')",
            "SELECT lo_export(1, '/tmp/x')",
            "SELECT set_config('role', 'postgres', false)",
            "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)",
            "SELECT query_to_xml('select * from t', true, false, '')",
            "SELECT ts_stat('select 1')",
            "SELECT pg_advisory_lock(1)",
            "SELECT load_file('/etc/passwd')",
            "SELECT get_lock('x', 1)",
            "SELECT load_extension('/tmp/evil.so')",
            "SELECT readfile('/etc/passwd')",
            "SELECT writefile('/tmp/x', 'y')",
            "INSERT INTO t VALUES (pg_read_file('/etc/passwd'))",
            "SELECT pg_read_file /* spaced */ ('/etc/passwd')",
            "SELECT * FROM pg_authid",
            "SELECT 1 INTO OUTFILE '/tmp/x'",
            "SELECT 1 INTO DUMPFILE '/tmp/x'",
        ] {
            for dialect in ALL {
                assert!(refused(dialect, sql), "{dialect:?} let through: {sql}");
            }
        }
        // A column that merely shares a denied prefix is not a call.
        assert_eq!(check(Dialect::Postgres, "SELECT lo_value FROM t"), Ok(()));
    }

    #[test]
    fn select_into_and_executable_comments_are_refused() {
        assert!(refused(Dialect::Postgres, "SELECT * INTO newtable FROM t"));
        assert!(refused(
            Dialect::Postgres,
            "SELECT 1 UNION SELECT a INTO newtable FROM t"
        ));
        assert!(refused(
            Dialect::MySql,
            "SELECT 1 /*! , load_file('/etc/passwd') */"
        ));
        assert!(refused(Dialect::MySql, "SELECT 1 /*M! , sleep(1) */"));
    }

    #[test]
    fn huge_or_deeply_nested_statements_are_refused_not_crashing() {
        let huge = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
        for dialect in ALL {
            assert!(refused(dialect, &huge));
        }
        let nested = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(refused(Dialect::Postgres, &nested));
        assert!(refused(Dialect::MySql, &nested));
    }

    #[test]
    fn refusals_say_what_and_why() {
        let err = check(Dialect::Sqlite, "ATTACH DATABASE 'x' AS h")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("ATTACH is not a data statement"), "{err}");
        let err = check(Dialect::Postgres, "DELETE FROM hookwise_effects")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("hookwise_effects belongs to the host"),
            "{err}"
        );
    }
}
