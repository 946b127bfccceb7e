//! Binding a statement's JSON parameters, per dialect: null, booleans,
//! integers, floats and strings bind as themselves; arrays and objects bind
//! as their JSON text. Values are always bound, never spliced into the SQL.

use serde_json::{Number, Value};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::mysql::MySqlArguments;
use sqlx::postgres::{PgArgumentBuffer, PgArguments, PgTypeInfo, types::Oid};
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Encode, MySql, Postgres, Sqlite, Type};

/// A JSON number as the closest SQL value.
enum SqlNumber {
    Int(i64),
    /// Above `i64::MAX`.
    Unsigned(u64),
    Float(f64),
    /// Not representable as any of the above (kept as its digits).
    Text(String),
}

fn number(n: &Number) -> SqlNumber {
    match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => SqlNumber::Int(i),
        (None, Some(u), _) => SqlNumber::Unsigned(u),
        (None, None, Some(f)) => SqlNumber::Float(f),
        (None, None, None) => SqlNumber::Text(n.to_string()),
    }
}

pub(super) fn sqlite<'q>(
    sql: &'q str,
    params: &'q [Value],
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    let mut query = sqlx::query(sql);
    for param in params {
        query = match param {
            Value::Null => query.bind(None::<String>),
            Value::Bool(b) => query.bind(*b),
            Value::Number(n) => match number(n) {
                SqlNumber::Int(i) => query.bind(i),
                // SQLite integers are 64-bit signed; larger ones keep their digits as text.
                SqlNumber::Unsigned(u) => query.bind(u.to_string()),
                SqlNumber::Float(f) => query.bind(f),
                SqlNumber::Text(t) => query.bind(t),
            },
            Value::String(s) => query.bind(s.as_str()),
            other => query.bind(other.to_string()),
        };
    }
    query
}

/// A NULL whose type PostgreSQL infers from the statement, so that `NULL`
/// fits any column (a typed `text` NULL would not fit an `integer` one).
struct UntypedNull;

impl Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        // OID 0: "unspecified", the server infers the parameter's type.
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }
}

/// PostgreSQL parameters carry the type of their JSON value (`bigint`,
/// `double precision`, `boolean`, `text`), so a string meant for another
/// type needs a cast in the SQL: `$1::timestamptz`, `$1::numeric`, `$1::jsonb`.
pub(super) fn postgres<'q>(sql: &'q str, params: &'q [Value]) -> Query<'q, Postgres, PgArguments> {
    // Not cached: sqlx caches a prepared statement by its SQL text together
    // with the parameter types of its first use, and the types here follow
    // the JSON values, which may differ from one call to the next.
    let mut query = sqlx::query(sql).persistent(false);
    for param in params {
        query = match param {
            Value::Null => query.bind(UntypedNull),
            Value::Bool(b) => query.bind(*b),
            Value::Number(n) => match number(n) {
                SqlNumber::Int(i) => query.bind(i),
                // No unsigned 64-bit type: the digits as text (cast to numeric in SQL).
                SqlNumber::Unsigned(u) => query.bind(u.to_string()),
                SqlNumber::Float(f) => query.bind(f),
                SqlNumber::Text(t) => query.bind(t),
            },
            Value::String(s) => query.bind(s.as_str()),
            other => query.bind(other.to_string()),
        };
    }
    query
}

pub(super) fn mysql<'q>(sql: &'q str, params: &'q [Value]) -> Query<'q, MySql, MySqlArguments> {
    let mut query = sqlx::query(sql);
    for param in params {
        query = match param {
            Value::Null => query.bind(None::<String>),
            Value::Bool(b) => query.bind(*b),
            Value::Number(n) => match number(n) {
                SqlNumber::Int(i) => query.bind(i),
                SqlNumber::Unsigned(u) => query.bind(u),
                SqlNumber::Float(f) => query.bind(f),
                SqlNumber::Text(t) => query.bind(t),
            },
            Value::String(s) => query.bind(s.as_str()),
            other => query.bind(other.to_string()),
        };
    }
    query
}
