//! The `write-db` plugin: one row inserted, upserted (on a key) or updated (by a key) in a
//! table of a connection granted to the plugin. Table and column names are checked against
//! a strict pattern and quoted for the connection's dialect; every value is bound as a
//! parameter, never spliced into the SQL. The host runs the statement in a transaction that
//! also records the call's idempotency key, so a retried or replayed execution writes once.

use std::collections::BTreeSet;

use hookwise_plugin_sdk::serde_json::{Map, Value, json};
use hookwise_plugin_sdk::{Context, Event, Plugin, PluginError, db, export_plugin, log};
use serde::Deserialize;

/// Longest identifier: PostgreSQL's limit (MySQL allows 64, SQLite more).
const MAX_IDENTIFIER: usize = 63;
/// Most columns in one row (below SQLite's default 2,000 and PostgreSQL's 1,664 limits).
const MAX_COLUMNS: usize = 500;
/// Tables hookwise itself owns (`hookwise_effects`) are off limits.
const RESERVED_PREFIX: &str = "hookwise_";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A connection named in the config's `connections` and granted in `allow.db`.
    pub connection: String,
    /// The connection's SQL dialect; default `sqlite`.
    #[serde(default)]
    pub dialect: Dialect,
    /// `table` or `schema.table`.
    pub table: String,
    #[serde(default)]
    pub mode: Mode,
    /// Key columns: the conflict target of an upsert, the WHERE of an update.
    #[serde(default)]
    pub key: Vec<String>,
    /// Column name -> value (strings, numbers, booleans, null; objects and arrays are
    /// stored as JSON text).
    pub columns: Map<String, Value>,
    /// What an update that matched no row does: `error` (default, fatal), `retry` (the row
    /// may be inserted by an event that has not arrived yet) or `ignore`.
    #[serde(default)]
    pub if_missing: IfMissing,
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    #[default]
    Sqlite,
    #[serde(alias = "postgresql")]
    Postgres,
    #[serde(alias = "mariadb")]
    Mysql,
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Insert,
    Upsert,
    Update,
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IfMissing {
    #[default]
    Error,
    Retry,
    Ignore,
}

/// One statement with its parameters in placeholder order.
#[derive(Debug, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

struct WriteDb;

impl Plugin for WriteDb {
    type Input = Input;
    type Output = Value;

    fn handle(_ctx: &Context, _event: &Event, input: Input) -> Result<Value, PluginError> {
        let statement = build(&input).map_err(|e| PluginError::fatal(format!("write-db: {e}")))?;
        let result = db::execute(&input.connection, &statement.sql, &statement.params)
            .map_err(|e| classify_db_error(&input, e))?;
        if db::already_applied(&result) {
            log::info("write-db: this execution's write was committed before; nothing to do");
            return Ok(json!({
                "mode": mode_name(input.mode),
                "table": input.table,
                "already_applied": true,
            }));
        }
        let rows = result
            .get("rows_affected")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        log::info(&format!(
            "write-db: {} into {} on {}: {rows} row(s)",
            mode_name(input.mode),
            input.table,
            input.connection
        ));
        if input.mode == Mode::Update && rows == 0 {
            let message = format!(
                "write-db: no row of {} matches the key ({})",
                input.table,
                input.key.join(", ")
            );
            match input.if_missing {
                IfMissing::Error => return Err(PluginError::fatal(message)),
                IfMissing::Retry => return Err(PluginError::retryable(message)),
                IfMissing::Ignore => log::warn(&message),
            }
        }
        Ok(json!({
            "mode": mode_name(input.mode),
            "table": input.table,
            "rows_affected": rows,
            "already_applied": false,
        }))
    }
}

export_plugin!(WriteDb);

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Insert => "insert",
        Mode::Upsert => "upsert",
        Mode::Update => "update",
    }
}

/// Database errors worth retrying: locks, deadlocks, serialisation failures, timeouts and
/// lost connections. Everything else (constraints, unknown tables or columns, type errors,
/// a connection that is not granted) repeats identically and is fatal.
fn classify_db_error(input: &Input, error: String) -> PluginError {
    const TRANSIENT: [&str; 10] = [
        "database is locked",
        "(code: 5)",
        "(code: 6)",
        "deadlock",
        "could not serialize",
        "lock wait timeout",
        "timed out",
        "connection",
        "pool",
        "i/o",
    ];
    let lower = error.to_ascii_lowercase();
    let message = format!("write-db: {} on {}: {error}", input.table, input.connection);
    if lower.contains("not granted") || lower.contains("not configured") {
        return PluginError::fatal(format!(
            "{message} (grant it with `allow: {{db: [{}]}}` on the write-db plugin)",
            input.connection
        ));
    }
    if TRANSIENT.iter().any(|t| lower.contains(t)) {
        return PluginError::retryable(message);
    }
    if lower.contains("syntax") && input.dialect == Dialect::Sqlite {
        return PluginError::fatal(format!(
            "{message} (is {} a PostgreSQL or MySQL connection? set `dialect`)",
            input.connection
        ));
    }
    PluginError::fatal(message)
}

/// Checks the input and builds the statement.
pub fn build(input: &Input) -> Result<Statement, String> {
    if input.connection.trim().is_empty() {
        return Err("`connection` is empty".into());
    }
    let table = quote_table(input.dialect, &input.table)?;
    if input.columns.is_empty() {
        return Err("`columns` is empty".into());
    }
    if input.columns.len() > MAX_COLUMNS {
        return Err(format!(
            "at most {MAX_COLUMNS} columns, got {}",
            input.columns.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for name in input.columns.keys() {
        check_identifier("column", name)?;
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(format!(
                "column {name:?} is given twice (names ignore case)"
            ));
        }
    }
    let mut keys = BTreeSet::new();
    for key in &input.key {
        check_identifier("key column", key)?;
        if !input.columns.contains_key(key) {
            return Err(format!("key column {key:?} is not in `columns`"));
        }
        if !keys.insert(key.as_str()) {
            return Err(format!("key column {key:?} is listed twice"));
        }
    }
    let d = input.dialect;
    let names: Vec<&String> = input.columns.keys().collect();
    let quoted: Vec<String> = names.iter().map(|n| quote(d, n)).collect();
    if input.mode == Mode::Insert && !input.key.is_empty() {
        return Err("`key` is only used with `mode: upsert` or `mode: update`".into());
    }
    if input.mode == Mode::Upsert && input.key.is_empty() {
        return Err("`mode: upsert` needs `key` (the columns of a unique index)".into());
    }
    if input.mode == Mode::Update {
        if input.key.is_empty() {
            return Err("`mode: update` needs `key` (the columns that find the row)".into());
        }
        if names.iter().all(|n| keys.contains(n.as_str())) {
            return Err("`mode: update` needs at least one column besides the key".into());
        }
        for key in &input.key {
            if input.columns[key.as_str()].is_null() {
                return Err(format!("key column {key:?} is null"));
            }
        }
    }
    // Columns besides the key: what an upsert or update sets.
    let others: Vec<&String> = names
        .iter()
        .copied()
        .filter(|n| !keys.contains(n.as_str()))
        .collect();
    if d == Dialect::Postgres {
        return Ok(build_postgres(input, &table, &quoted, &others));
    }
    match input.mode {
        Mode::Insert => {
            let params: Vec<Value> = input.columns.values().map(param).collect();
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                quoted.join(", "),
                placeholders(params.len())
            );
            Ok(Statement { sql, params })
        }
        Mode::Upsert => {
            let params: Vec<Value> = input.columns.values().map(param).collect();
            let mut sql = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                quoted.join(", "),
                placeholders(params.len())
            );
            if d == Dialect::Sqlite {
                let target: Vec<String> = input.key.iter().map(|k| quote(d, k)).collect();
                sql.push_str(&format!(" ON CONFLICT ({}) DO ", target.join(", ")));
                if others.is_empty() {
                    sql.push_str("NOTHING");
                } else {
                    let sets: Vec<String> = others
                        .iter()
                        .map(|c| format!("{0} = excluded.{0}", quote(d, c)))
                        .collect();
                    sql.push_str(&format!("UPDATE SET {}", sets.join(", ")));
                }
            } else {
                // MySQL picks the conflicting unique index itself; `VALUES(col)` works
                // in MySQL 5.7/8 and MariaDB alike.
                let sets: Vec<String> = if others.is_empty() {
                    input
                        .key
                        .iter()
                        .map(|k| format!("{0} = {0}", quote(d, k)))
                        .collect()
                } else {
                    others
                        .iter()
                        .map(|c| format!("{0} = VALUES({0})", quote(d, c)))
                        .collect()
                };
                sql.push_str(&format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", ")));
            }
            Ok(Statement { sql, params })
        }
        Mode::Update => {
            let mut params = Vec::new();
            let mut assignments = Vec::new();
            for column in &others {
                params.push(param(&input.columns[column.as_str()]));
                assignments.push(format!("{} = ?", quote(d, column)));
            }
            let mut conditions = Vec::new();
            for key in &input.key {
                params.push(param(&input.columns[key.as_str()]));
                conditions.push(format!("{} = ?", quote(d, key)));
            }
            let sql = format!(
                "UPDATE {table} SET {} WHERE {}",
                assignments.join(", "),
                conditions.join(" AND ")
            );
            Ok(Statement { sql, params })
        }
    }
}

/// PostgreSQL types every parameter, and the host types them after their JSON values
/// (`text`, `bigint`, `double precision`, `boolean`): a text parameter does not fit a
/// `numeric`, `timestamptz` or `jsonb` column, nor compare with a `bigint` key. So the row
/// goes in as one JSON parameter that `json_populate_record` turns into the table's own row
/// type, converting each value with its column type's input function (`"649.90"` fits a
/// `numeric`, `"2024-05-01T11:58:00-04:00"` a `timestamptz`, `820982911946154508` a `text`).
/// Only the named columns are written, so the others keep their defaults.
fn build_postgres(input: &Input, table: &str, quoted: &[String], others: &[&String]) -> Statement {
    let d = Dialect::Postgres;
    let row = format!("json_populate_record(NULL::{table}, $1::json)");
    let params = vec![Value::String(
        Value::Object(input.columns.clone()).to_string(),
    )];
    let sql = match input.mode {
        Mode::Insert | Mode::Upsert => {
            let columns = quoted.join(", ");
            let mut sql = format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM {row}");
            if input.mode == Mode::Upsert {
                let target: Vec<String> = input.key.iter().map(|k| quote(d, k)).collect();
                sql.push_str(&format!(" ON CONFLICT ({}) DO ", target.join(", ")));
                if others.is_empty() {
                    sql.push_str("NOTHING");
                } else {
                    let sets: Vec<String> = others
                        .iter()
                        .map(|c| format!("{0} = excluded.{0}", quote(d, c)))
                        .collect();
                    sql.push_str(&format!("UPDATE SET {}", sets.join(", ")));
                }
            }
            sql
        }
        Mode::Update => {
            // Aliases, so that `schema.table` and a table named like a column both work;
            // `hookwise_*` names cannot be user tables.
            let sets: Vec<String> = others
                .iter()
                .map(|c| format!("{0} = hookwise_row.{0}", quote(d, c)))
                .collect();
            let conditions: Vec<String> = input
                .key
                .iter()
                .map(|k| format!("hookwise_target.{0} = hookwise_row.{0}", quote(d, k)))
                .collect();
            format!(
                "UPDATE {table} AS hookwise_target SET {} FROM {row} AS hookwise_row WHERE {}",
                sets.join(", "),
                conditions.join(" AND ")
            )
        }
    };
    Statement { sql, params }
}

/// Arrays and objects go in as JSON text (the host does the same for any it is given).
fn param(value: &Value) -> Value {
    match value {
        Value::Array(_) | Value::Object(_) => Value::String(value.to_string()),
        other => other.clone(),
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes. Anything else (quotes, spaces, dots,
/// semicolons, comment markers) is refused rather than escaped.
pub fn check_identifier(what: &str, name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let ok = match bytes.next() {
        Some(first) => {
            (first.is_ascii_alphabetic() || first == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        None => false,
    };
    if !ok {
        return Err(format!(
            "{what} {name:?} is not a plain identifier (letters, digits and `_`, not starting with a digit)"
        ));
    }
    if name.len() > MAX_IDENTIFIER {
        return Err(format!(
            "{what} {name:?} is longer than {MAX_IDENTIFIER} characters"
        ));
    }
    Ok(())
}

/// `table` or `schema.table`, checked and quoted.
fn quote_table(d: Dialect, table: &str) -> Result<String, String> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 {
        return Err(format!("table {table:?}: use `table` or `schema.table`"));
    }
    for part in &parts {
        check_identifier("table", part)?;
    }
    let name = parts[parts.len() - 1];
    if name.to_ascii_lowercase().starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "table {table:?}: tables named {RESERVED_PREFIX}* belong to hookwise"
        ));
    }
    Ok(parts
        .iter()
        .map(|p| quote(d, p))
        .collect::<Vec<_>>()
        .join("."))
}

/// Quotes a checked identifier (so reserved words such as `order` work as names).
fn quote(d: Dialect, name: &str) -> String {
    match d {
        Dialect::Sqlite | Dialect::Postgres => format!("\"{name}\""),
        Dialect::Mysql => format!("`{name}`"),
    }
}

/// `count` `?` placeholders (SQLite and MySQL; PostgreSQL binds one JSON row).
fn placeholders(count: usize) -> String {
    vec!["?"; count].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookwise_plugin_sdk::serde_json::{self, json};

    fn input(value: Value) -> Input {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    fn sql(value: Value) -> Result<Statement, String> {
        build(&input(value))
    }

    #[test]
    fn insert_per_dialect() {
        let base = json!({"connection": "c", "table": "orders", "columns": {"id": 1, "name": "x"}});
        let s = sql(base.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.sql,
            r#"INSERT INTO "orders" ("id", "name") VALUES (?, ?)"#
        );
        assert_eq!(s.params, vec![json!(1), json!("x")]);
        let mut pg = base.clone();
        pg["dialect"] = json!("postgres");
        let s = sql(pg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.sql,
            r#"INSERT INTO "orders" ("id", "name") SELECT "id", "name" FROM json_populate_record(NULL::"orders", $1::json)"#
        );
        assert_eq!(s.params, vec![json!(r#"{"id":1,"name":"x"}"#)]);
        let mut my = base;
        my["dialect"] = json!("mariadb");
        assert_eq!(
            sql(my).map(|s| s.sql),
            Ok("INSERT INTO `orders` (`id`, `name`) VALUES (?, ?)".to_string())
        );
    }

    #[test]
    fn upsert_and_update() {
        let up = json!({"connection": "c", "table": "s.t", "mode": "upsert", "key": ["id"],
                        "columns": {"id": 1, "v": "a"}, "dialect": "postgres"});
        assert_eq!(
            sql(up).map(|s| s.sql),
            Ok(r#"INSERT INTO "s"."t" ("id", "v") SELECT "id", "v" FROM json_populate_record(NULL::"s"."t", $1::json) ON CONFLICT ("id") DO UPDATE SET "v" = excluded."v""#.to_string())
        );
        let lite = json!({"connection": "c", "table": "t", "mode": "upsert", "key": ["id"],
                          "columns": {"id": 1, "v": "a"}});
        assert_eq!(
            sql(lite).map(|s| s.sql),
            Ok(r#"INSERT INTO "t" ("id", "v") VALUES (?, ?) ON CONFLICT ("id") DO UPDATE SET "v" = excluded."v""#.to_string())
        );
        let my = json!({"connection": "c", "table": "t", "mode": "upsert", "key": ["id"],
                        "columns": {"id": 1, "v": "a"}, "dialect": "mysql"});
        assert_eq!(
            sql(my).map(|s| s.sql),
            Ok("INSERT INTO `t` (`id`, `v`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `v` = VALUES(`v`)".to_string())
        );
        let upd = json!({"connection": "c", "table": "t", "mode": "update", "key": ["id"],
                         "columns": {"id": 7, "v": "a"}, "dialect": "postgres"});
        let s = sql(upd).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.sql,
            r#"UPDATE "t" AS hookwise_target SET "v" = hookwise_row."v" FROM json_populate_record(NULL::"t", $1::json) AS hookwise_row WHERE hookwise_target."id" = hookwise_row."id""#
        );
        assert_eq!(s.params, vec![json!(r#"{"id":7,"v":"a"}"#)]);
        let upd = json!({"connection": "c", "table": "t", "mode": "update", "key": ["id"],
                         "columns": {"id": 7, "v": {"a": [1]}}, "dialect": "mysql"});
        let s = sql(upd).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.sql, "UPDATE `t` SET `v` = ? WHERE `id` = ?");
        assert_eq!(s.params, vec![json!(r#"{"a":[1]}"#), json!(7)]);
    }

    #[test]
    fn hostile_identifiers_are_refused() {
        for table in [
            "t; DROP TABLE x",
            "t\"",
            "t`",
            "a.b.c",
            "",
            "1t",
            "t--",
            "hookwise_effects",
            "main.hookwise_effects",
        ] {
            let v = json!({"connection": "c", "table": table, "columns": {"id": 1}});
            assert!(sql(v).is_err(), "{table:?} accepted");
        }
        for column in ["id\") VALUES (1); --", "a b", "x`", "Id"] {
            let v = json!({"connection": "c", "table": "t", "columns": {"id": 1, column: 2}});
            assert!(sql(v).is_err(), "{column:?} accepted");
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        let cases = [
            json!({"connection": "c", "table": "t", "columns": {}}),
            json!({"connection": "c", "table": "t", "mode": "upsert", "columns": {"a": 1}}),
            json!({"connection": "c", "table": "t", "mode": "update", "key": ["a"], "columns": {"a": 1}}),
            json!({"connection": "c", "table": "t", "mode": "update", "key": ["b"], "columns": {"a": 1}}),
            json!({"connection": "c", "table": "t", "mode": "update", "key": ["a"], "columns": {"a": null, "b": 1}}),
            json!({"connection": "c", "table": "t", "key": ["a"], "columns": {"a": 1}}),
        ];
        for case in cases {
            assert!(sql(case.clone()).is_err(), "{case} accepted");
        }
    }
}
