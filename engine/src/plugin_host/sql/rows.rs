//! Result rows as JSON objects, per dialect. Integers, floats, booleans,
//! text and NULL map to themselves; JSON columns to their value; bytes to
//! lowercase hex; numeric/decimal to their exact decimal text; dates, times
//! and timestamps to ISO 8601 text (`Z` when the value is UTC). A column of
//! any other type is an error naming the column and its type: cast it in SQL.
//!
//! The wire formats of PostgreSQL `numeric`/date-time values and MySQL
//! date-time values are decoded here (pure functions, tested below) rather
//! than through a decimal or date crate.

use serde_json::{Map, Value};
use sqlx::mysql::MySqlRow;
use sqlx::postgres::{PgRow, PgTypeKind, PgValueFormat};
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::DbError;
use crate::rfc3339::civil_from_days;

fn column_error(column: &str, message: impl Into<String>) -> DbError {
    DbError::Column {
        column: column.to_string(),
        message: message.into(),
    }
}

fn unsupported(column: &str, type_name: &str) -> DbError {
    column_error(
        column,
        format!("type {type_name} has no JSON mapping; cast it in SQL (to text, for example)"),
    )
}

/// A float as JSON; NaN and infinities (not JSON numbers) as text.
fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(f.to_string()))
}

pub(super) fn sqlite(row: &SqliteRow) -> Result<Map<String, Value>, DbError> {
    let mut out = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let raw = row.try_get_raw(i)?;
        // SQLite values carry their own storage class, whatever the column says.
        let value = if raw.is_null() {
            Value::Null
        } else if let Ok(v) = row.try_get::<i64, _>(i) {
            Value::from(v)
        } else if let Ok(v) = row.try_get::<f64, _>(i) {
            float(v)
        } else if let Ok(v) = row.try_get::<String, _>(i) {
            Value::from(v)
        } else if let Ok(v) = row.try_get::<Vec<u8>, _>(i) {
            Value::from(hex::encode(v))
        } else {
            return Err(unsupported(name, raw.type_info().name()));
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

pub(super) fn postgres(row: &PgRow) -> Result<Map<String, Value>, DbError> {
    let mut out = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            out.insert(name.to_string(), Value::Null);
            continue;
        }
        let type_info = raw.type_info().into_owned();
        let bytes = || -> Result<&[u8], DbError> {
            raw.as_bytes()
                .map_err(|e| column_error(name, e.to_string()))
        };
        let binary = raw.format() == PgValueFormat::Binary;
        let value = match type_info.name() {
            "BOOL" => Value::from(row.try_get::<bool, _>(i)?),
            "INT2" => Value::from(row.try_get::<i16, _>(i)?),
            "INT4" => Value::from(row.try_get::<i32, _>(i)?),
            "INT8" => Value::from(row.try_get::<i64, _>(i)?),
            "OID" => Value::from(row.try_get::<sqlx::postgres::types::Oid, _>(i)?.0),
            "FLOAT4" => float(f64::from(row.try_get::<f32, _>(i)?)),
            "FLOAT8" => float(row.try_get::<f64, _>(i)?),
            // `CHAR` is `char(n)` (bpchar); `citext` is an extension's type.
            "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" | "citext" => {
                Value::from(row.try_get::<String, _>(i)?)
            }
            "JSON" | "JSONB" => row.try_get::<Value, _>(i)?,
            "UUID" => Value::from(row.try_get::<uuid::Uuid, _>(i)?.to_string()),
            "BYTEA" => Value::from(hex::encode(row.try_get::<Vec<u8>, _>(i)?)),
            "NUMERIC" if binary => Value::from(
                pg_numeric(bytes()?).ok_or_else(|| column_error(name, "malformed numeric"))?,
            ),
            "TIMESTAMPTZ" | "TIMESTAMP" | "DATE" | "TIME" if binary => {
                let text = match type_info.name() {
                    "TIMESTAMPTZ" => pg_timestamp(bytes()?, true),
                    "TIMESTAMP" => pg_timestamp(bytes()?, false),
                    "DATE" => pg_date(bytes()?),
                    _ => pg_time(bytes()?),
                };
                Value::from(text.ok_or_else(|| column_error(name, "malformed date/time"))?)
            }
            _ if matches!(type_info.kind(), PgTypeKind::Enum(_)) || !binary => Value::from(
                raw.as_str()
                    .map_err(|e| column_error(name, e.to_string()))?,
            ),
            other => return Err(unsupported(name, other)),
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

pub(super) fn mysql(row: &MySqlRow) -> Result<Map<String, Value>, DbError> {
    let mut out = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            out.insert(name.to_string(), Value::Null);
            continue;
        }
        let type_name = raw.type_info().name().to_string();
        // Raw bytes and text, without sqlx's type check (used where the
        // wire value is known to be text or is decoded here).
        let bytes = || -> Result<&[u8], DbError> { Ok(row.try_get_unchecked::<&[u8], _>(i)?) };
        let text = || -> Result<String, DbError> {
            String::from_utf8(bytes()?.to_vec()).map_err(|e| column_error(name, e.to_string()))
        };
        let value = match type_name.as_str() {
            "BOOLEAN" => Value::from(row.try_get::<bool, _>(i)?),
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
                Value::from(row.try_get::<i64, _>(i)?)
            }
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
            | "BIGINT UNSIGNED" | "YEAR" => Value::from(row.try_get::<u64, _>(i)?),
            "FLOAT" => float(f64::from(row.try_get::<f32, _>(i)?)),
            "DOUBLE" => float(row.try_get::<f64, _>(i)?),
            // Decimals travel as text in both protocols.
            "DECIMAL" => Value::from(text()?),
            "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "SET" => Value::from(text()?),
            // MySQL's JSON type (MariaDB's is LONGTEXT); keep the text if it is not JSON.
            "JSON" => {
                let text = text()?;
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            }
            "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BIT"
            | "GEOMETRY" => Value::from(hex::encode(bytes()?)),
            // sqlx sets the session time zone to UTC, so TIMESTAMP values are UTC.
            "DATE" | "DATETIME" | "TIMESTAMP" => {
                let raw = bytes()?;
                let decoded = mysql_datetime(raw, type_name == "TIMESTAMP");
                Value::from(
                    decoded
                        .or_else(|| text_of(raw))
                        .ok_or_else(|| column_error(name, "malformed date/time"))?,
                )
            }
            "TIME" => {
                let raw = bytes()?;
                Value::from(
                    mysql_time(raw)
                        .or_else(|| text_of(raw))
                        .ok_or_else(|| column_error(name, "malformed time"))?,
                )
            }
            "NULL" => Value::Null,
            other => return Err(unsupported(name, other)),
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

/// The text-protocol form of a value (already a readable string).
fn text_of(raw: &[u8]) -> Option<String> {
    std::str::from_utf8(raw).ok().map(str::to_string)
}

/// `HH:MM:SS` plus `.ffffff` (trailing zeros dropped) when there are microseconds.
fn clock(hours: i64, minutes: i64, seconds: i64, micros: i64) -> String {
    let mut out = format!("{hours:02}:{minutes:02}:{seconds:02}");
    if micros != 0 {
        let fraction = format!("{micros:06}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out
}

fn date(year: i64, month: i64, day: i64) -> String {
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's date-time epoch.
const PG_EPOCH_DAYS: i64 = 10_957;
const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

fn be_i64(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.try_into().ok()?))
}

/// Binary `timestamp`/`timestamptz`: microseconds since 2000-01-01 00:00 (UTC for `tz`).
fn pg_timestamp(bytes: &[u8], tz: bool) -> Option<String> {
    let micros = be_i64(bytes)?;
    match micros {
        i64::MAX => return Some("infinity".to_string()),
        i64::MIN => return Some("-infinity".to_string()),
        _ => {}
    }
    let days = micros.div_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days + PG_EPOCH_DAYS);
    let mut out = format!(
        "{}T{}",
        date(y, m, d),
        pg_clock(micros.rem_euclid(MICROS_PER_DAY))
    );
    if tz {
        out.push('Z');
    }
    Some(out)
}

fn pg_clock(micros: i64) -> String {
    let seconds = micros / MICROS_PER_SECOND;
    clock(
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        micros % MICROS_PER_SECOND,
    )
}

/// Binary `date`: days since 2000-01-01.
fn pg_date(bytes: &[u8]) -> Option<String> {
    let days = i32::from_be_bytes(bytes.try_into().ok()?);
    Some(match days {
        i32::MAX => "infinity".to_string(),
        i32::MIN => "-infinity".to_string(),
        _ => {
            let (y, m, d) = civil_from_days(i64::from(days) + PG_EPOCH_DAYS);
            date(y, m, d)
        }
    })
}

/// Binary `time`: microseconds since midnight.
fn pg_time(bytes: &[u8]) -> Option<String> {
    Some(pg_clock(be_i64(bytes)?))
}

/// Binary `numeric`: digit count, weight (in base-10000 digits), sign,
/// display scale, then the base-10000 digits, all big-endian 16-bit.
fn pg_numeric(bytes: &[u8]) -> Option<String> {
    const POSITIVE: u16 = 0x0000;
    const NEGATIVE: u16 = 0x4000;
    const NAN: u16 = 0xC000;
    const INFINITY: u16 = 0xD000;
    const NEG_INFINITY: u16 = 0xF000;
    let word = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(2)? as i16);
    let sign = word(4)?;
    let scale = usize::from(word(6)?);
    let digits: Vec<u16> = (0..ndigits)
        .map(|k| word(8 + 2 * k))
        .collect::<Option<_>>()?;
    if digits.iter().any(|d| *d > 9999) {
        return None;
    }
    let negative = match sign {
        POSITIVE => false,
        NEGATIVE => true,
        NAN => return Some("NaN".to_string()),
        INFINITY => return Some("Infinity".to_string()),
        NEG_INFINITY => return Some("-Infinity".to_string()),
        _ => return None,
    };
    // Digit k stands for digits[k] * 10000^(weight - k).
    let digit_at = |power: i64| -> u16 {
        usize::try_from(weight - power)
            .ok()
            .and_then(|k| digits.get(k).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        out.push_str(&digit_at(weight).to_string());
        for power in (0..weight).rev() {
            out.push_str(&format!("{:04}", digit_at(power)));
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let mut power = -1;
        while fraction.len() < scale {
            fraction.push_str(&format!("{:04}", digit_at(power)));
            power -= 1;
        }
        fraction.truncate(scale);
        out.push('.');
        out.push_str(&fraction);
    }
    Some(out)
}

/// Binary MySQL `DATE`/`DATETIME`/`TIMESTAMP`: a length byte (0, 4, 7 or
/// 11), then year (LE u16), month, day, hour, minute, second, microseconds (LE u32).
fn mysql_datetime(bytes: &[u8], utc: bool) -> Option<String> {
    let (&len, rest) = bytes.split_first()?;
    if rest.len() != usize::from(len) {
        return None;
    }
    let byte = |at: usize| i64::from(rest.get(at).copied().unwrap_or(0));
    let (year, month, day) = match len {
        0 => (0, 0, 0),
        4 | 7 | 11 => (
            i64::from(u16::from_le_bytes([rest[0], rest[1]])),
            byte(2),
            byte(3),
        ),
        _ => return None,
    };
    if len == 4 {
        return Some(date(year, month, day));
    }
    let micros = match rest.get(7..11) {
        Some(b) => i64::from(u32::from_le_bytes(b.try_into().ok()?)),
        None => 0,
    };
    let mut out = format!(
        "{}T{}",
        date(year, month, day),
        clock(byte(4), byte(5), byte(6), micros)
    );
    if utc {
        out.push('Z');
    }
    Some(out)
}

/// Binary MySQL `TIME`: a length byte (0, 8 or 12), then a negative flag,
/// days (LE u32), hours, minutes, seconds, microseconds (LE u32).
fn mysql_time(bytes: &[u8]) -> Option<String> {
    let (&len, rest) = bytes.split_first()?;
    if rest.len() != usize::from(len) || !matches!(len, 0 | 8 | 12) {
        return None;
    }
    if len == 0 {
        return Some("00:00:00".to_string());
    }
    let days = i64::from(u32::from_le_bytes(rest[1..5].try_into().ok()?));
    let micros = match rest.get(8..12) {
        Some(b) => i64::from(u32::from_le_bytes(b.try_into().ok()?)),
        None => 0,
    };
    let sign = if rest[0] == 1 { "-" } else { "" };
    Some(format!(
        "{sign}{}",
        clock(
            days * 24 + i64::from(rest[5]),
            i64::from(rest[6]),
            i64::from(rest[7]),
            micros
        )
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        for w in [ndigits, weight as u16, sign, scale] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn postgres_numeric_as_exact_text() {
        let cases: &[(Vec<u8>, Option<&str>)] = &[
            (numeric(0, 0, 0, 0, &[]), Some("0")),
            (numeric(0, 0, 0, 2, &[]), Some("0.00")),
            (numeric(2, 0, 0, 2, &[12, 5000]), Some("12.50")),
            (numeric(2, 0, 0x4000, 1, &[12, 5000]), Some("-12.5")),
            (numeric(1, -1, 0, 3, &[10]), Some("0.001")),
            (numeric(1, -2, 0, 8, &[12]), Some("0.00000012")),
            (numeric(1, 1, 0, 0, &[1]), Some("10000")),
            (numeric(3, 2, 0, 0, &[1, 2, 3]), Some("100020003")),
            (
                numeric(4, 1, 0, 5, &[9999, 9999, 1234, 5000]),
                Some("99999999.12345"),
            ),
            (numeric(0, 0, 0xC000, 0, &[]), Some("NaN")),
            (numeric(0, 0, 0xF000, 0, &[]), Some("-Infinity")),
            (numeric(2, 0, 0, 0, &[1]), None),
            (numeric(1, 0, 0, 0, &[10000]), None),
            (numeric(1, 0, 0x1234, 0, &[1]), None),
            (vec![0, 1], None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(pg_numeric(bytes).as_deref(), *expected, "{bytes:?}");
        }
    }

    #[test]
    fn postgres_dates_and_times() {
        let micros = |v: i64| v.to_be_bytes().to_vec();
        // 2024-02-29 13:14:15.5 is 8825 days and 47655.5 s after 2000-01-01.
        let leap = 8825 * MICROS_PER_DAY + 47_655_500_000;
        assert_eq!(
            pg_timestamp(&micros(leap), true).as_deref(),
            Some("2024-02-29T13:14:15.5Z")
        );
        assert_eq!(
            pg_timestamp(&micros(leap), false).as_deref(),
            Some("2024-02-29T13:14:15.5")
        );
        assert_eq!(
            pg_timestamp(&micros(-1), true).as_deref(),
            Some("1999-12-31T23:59:59.999999Z")
        );
        assert_eq!(
            pg_timestamp(&micros(i64::MAX), true).as_deref(),
            Some("infinity")
        );
        assert_eq!(pg_timestamp(&[1, 2], true), None);
        assert_eq!(
            pg_date(&8825i32.to_be_bytes()).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(
            pg_date(&(-1i32).to_be_bytes()).as_deref(),
            Some("1999-12-31")
        );
        assert_eq!(
            pg_time(&micros(47_655_000_123)).as_deref(),
            Some("13:14:15.000123")
        );
    }

    #[test]
    fn mysql_dates_and_times() {
        let cases: &[(&[u8], bool, Option<&str>)] = &[
            (&[4, 0xE8, 0x07, 2, 29], false, Some("2024-02-29")),
            (
                &[7, 0xE8, 0x07, 2, 29, 13, 14, 15],
                false,
                Some("2024-02-29T13:14:15"),
            ),
            (
                &[11, 0xE8, 0x07, 2, 29, 13, 14, 15, 0x20, 0xA1, 0x07, 0],
                true,
                Some("2024-02-29T13:14:15.5Z"),
            ),
            (&[0], false, Some("0000-00-00T00:00:00")),
            (&[5, 1, 2, 3, 4, 5], false, None),
            (&[7, 1, 2], false, None),
            (b"2024-02-29", false, None),
        ];
        for (bytes, utc, expected) in cases {
            assert_eq!(
                mysql_datetime(bytes, *utc).as_deref(),
                *expected,
                "{bytes:?}"
            );
        }
        assert_eq!(
            mysql_time(&[8, 1, 1, 0, 0, 0, 2, 3, 4]).as_deref(),
            Some("-26:03:04")
        );
        assert_eq!(
            mysql_time(&[12, 0, 0, 0, 0, 0, 2, 3, 4, 1, 0, 0, 0]).as_deref(),
            Some("02:03:04.000001")
        );
        assert_eq!(mysql_time(&[0]).as_deref(), Some("00:00:00"));
        assert_eq!(mysql_time(b"12:00:00"), None);
    }
}
