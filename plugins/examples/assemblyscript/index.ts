// Example hookwise plugin in AssemblyScript, using all three capabilities:
//
// * logs what it is doing,
// * POSTs a small JSON summary of the event to `input.url` (needs `allow.http`),
// * inserts one row into `input.table` on the connection `input.connection` (needs
//   `allow.db`): columns `event_id`, `event_type`, `ref`, `status`,
// * answers `{"event", "posted", "status", "table", "rows_affected"}`.
//
// A 5xx or 429 answer is a retryable error (with the receiver's `Retry-After` seconds as the
// hint); an input without `url`, `connection` or `table`, or a table name that is not a plain
// identifier, is a fatal one.
//
// Build: `plugins/examples/assemblyscript/build.sh OUT_DIR` (writes OUT_DIR/assemblyscript.wasm).

import * as hw from "../../sdk/assemblyscript/hookwise";

export function _start(): void {
  const req = hw.Request.read();

  const url = req.input.getString("url");
  if (url == null) return hw.fatal("input lacks `url`");
  const connection = req.input.getString("connection");
  if (connection == null) return hw.fatal("input lacks `connection`");
  const table = req.input.getString("table");
  if (table == null) return hw.fatal("input lacks `table`");
  if (!isIdentifier(table)) return hw.fatal("`table` must be a plain SQL identifier, not `" + table + "`");

  const ref = req.event.payload.getString("ref");
  hw.info(
    "assemblyscript plugin: event " + req.event.id + " (" + req.event.eventType + " from " +
      req.event.source + "), attempt " + req.ctx.attempt.toString(),
  );

  // HTTP: a JSON summary of the event.
  const body = new hw.JsonObject()
    .str("event", req.event.id)
    .str("event_type", req.event.eventType)
    .str("ref", ref)
    .str("from", "assemblyscript")
    .toString();
  const response = hw.http(new hw.HttpRequest("POST", url).json(body));
  if (response == null) return hw.retryable("POST " + url + " failed: " + hw.lastError());
  hw.debug("POST " + url + " -> " + response.status.toString());
  if (response.isRetryable()) {
    let after: i64 = -1;
    const header = response.header("retry-after");
    if (header != null) {
      const secs = I64.parseInt(header.trim(), 10);
      if (secs > 0) after = secs * 1000;
    }
    return hw.retryable(url + " answered " + response.status.toString(), after);
  }
  if (response.status >= 400) hw.warn(url + " answered " + response.status.toString() + "; recording it anyway");

  // Database: one row per event (the call's transaction commits when it succeeds).
  const sql = "INSERT INTO " + table + " (event_id, event_type, ref, status) VALUES (?, ?, ?, ?)";
  const params = new hw.JsonArray().str(req.event.id).str(req.event.eventType).str(ref).int(response.status);
  const inserted = hw.db(connection, sql, params);
  if (inserted == null) return hw.retryable("INSERT failed: " + hw.lastError());
  hw.info("inserted " + inserted.rowsAffected.toString() + " row(s) into " + table);

  hw.ok(
    new hw.JsonObject()
      .str("event", req.event.id)
      .str("posted", url)
      .int("status", response.status)
      .str("table", table)
      .int("rows_affected", inserted.rowsAffected)
      .toString(),
  );
}

/** `[A-Za-z_][A-Za-z0-9_]*`: safe to put into SQL text (values go through parameters). */
function isIdentifier(name: string): bool {
  if (name.length == 0 || name.length > 63) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95;
    const digit = c >= 48 && c <= 57;
    if (!(letter || (i > 0 && digit))) return false;
  }
  return true;
}
