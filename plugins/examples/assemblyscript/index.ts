// The AssemblyScript example plugin: for a GitHub push it logs, POSTs a summary to `input.url`
// (through the plugin's `allow.http` grant), records the push as a row of `input.table` on
// `input.connection` (`allow.db`), and answers what it did. Every language's example follows
// this contract (see plugins/examples/go/main.go).
//
//   input: {"url": "https://...", "connection": "app", "table": "pushes"}
//
// The table needs the columns (event_id, repository, pusher, commits); `?` placeholders
// (SQLite, MySQL). A missing input key is a fatal error; an HTTP answer of 429 or 5xx is a
// retryable one (honouring a Retry-After of seconds); any other non-2xx answer is fatal.
//
// Build: `plugins/examples/assemblyscript/build.sh OUT_DIR` (writes OUT_DIR/assemblyscript.wasm).

import * as hw from "../../sdk/assemblyscript/hookwise";

/** How much of a refusing receiver's answer goes into the error message. */
const CLIP_CHARS = 200;

export function _start(): void {
  const req = hw.Request.read();

  const url = present(req, "url");
  if (url == null) return hw.fatal("input.url is missing");
  const connection = present(req, "connection");
  if (connection == null) return hw.fatal("input.connection is missing");
  const table = present(req, "table");
  if (table == null) return hw.fatal("input.table is missing");
  // A table name cannot be a bound parameter: allow plain identifiers only.
  if (!isIdentifier(table)) return hw.fatal("input.table " + hw.jsonString(table) + " is not a plain identifier");

  const payload = req.event.payload;
  let repository = payload.getString("repository.full_name");
  if (repository == null || repository.length == 0) repository = "unknown";
  let pusher = payload.getString("pusher.name");
  if (pusher == null || pusher.length == 0) pusher = "someone";
  const list = payload.get("commits");
  const commits = list == null ? 0 : list.items.length;
  hw.info(
    "assemblyscript plugin: " + pusher! + " pushed " + commits.toString() + " commit(s) to " + repository! +
      " (event " + req.event.id + ", attempt " + req.ctx.attempt.toString() + ")",
  );

  const text = pusher! + " pushed " + commits.toString() + " commit(s) to " + repository!;
  let ref = payload.getString("ref");
  if (ref == null) ref = "";
  let after = payload.getString("after");
  if (after == null) after = "";
  const body = new hw.JsonObject()
    .str("text", text)
    .str("repository", repository)
    .str("ref", ref)
    .str("after", after)
    .str("event_id", req.event.id)
    .toString();
  const response = hw.http(new hw.HttpRequest("POST", url).json(body));
  if (response == null) return hw.retryable("POST " + url + " failed: " + hw.lastError());
  if (response.isRetryable()) {
    let hint: i64 = -1;
    const header = response.header("retry-after");
    if (header != null) {
      const secs = I64.parseInt(header.trim(), 10);
      if (secs > 0) hint = secs * 1000;
    }
    return hw.retryable("the receiver answered " + response.status.toString(), hint);
  }
  if (response.status < 200 || response.status > 299) {
    let answer = response.body;
    if (answer == null) answer = "";
    const clipped = answer.length > CLIP_CHARS ? answer.substring(0, CLIP_CHARS) + "..." : answer;
    return hw.fatal("the receiver answered " + response.status.toString() + ": " + clipped);
  }
  hw.debug("assemblyscript plugin: the receiver answered " + response.status.toString());

  const sql = "INSERT INTO " + table + " (event_id, repository, pusher, commits) VALUES (?, ?, ?, ?)";
  const params = new hw.JsonArray().str(req.event.id).str(repository).str(pusher).int(commits);
  const inserted = hw.db(connection, sql, params);
  if (inserted == null) return hw.retryable(hw.lastError());

  hw.ok(
    new hw.JsonObject()
      .raw("posted", new hw.JsonObject().str("url", url).int("status", response.status).toString())
      .raw(
        "inserted",
        new hw.JsonObject()
          .str("connection", connection)
          .str("table", table)
          .int("rows_affected", inserted.rowsAffected)
          .bool("already_applied", inserted.alreadyApplied)
          .toString(),
      )
      .str("text", text)
      .toString(),
  );
}

/** `input[key]` when it is a non-empty string, else null. */
function present(req: hw.Request, key: string): string | null {
  const value = req.input.getString(key);
  return value != null && value.length > 0 ? value : null;
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
