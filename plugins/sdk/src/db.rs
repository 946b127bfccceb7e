//! Parameterised SQL on a connection the operator granted to this plugin.
//!
//! All statements of one call commit together when `handle` returns `Ok`.

use serde_json::Value;

/// Runs `sql` with `params` bound to its placeholders.
///
/// Returns `{"rows": [{column: value, ...}], "rows_affected": n, "truncated": bool}` (`rows`
/// empty for statements that return none; `truncated` when more rows existed than the
/// per-statement limit), or `{"already_applied": true}` when this call's effects were
/// committed before.
pub fn execute(connection: &str, sql: &str, params: &[Value]) -> Result<Value, String> {
    let params = serde_json::to_string(params).map_err(|e| e.to_string())?;
    let out = crate::bindings::hookwise::plugin::db::execute(connection, sql, &params)?;
    serde_json::from_str(&out).map_err(|e| format!("host returned invalid JSON: {e}"))
}

/// True when the host reports that this call's effects were already committed.
pub fn already_applied(result: &Value) -> bool {
    result.get("already_applied") == Some(&Value::Bool(true))
}
