// hookwise plugin SDK for AssemblyScript (0.28).
//
// A hookwise plugin in AssemblyScript is a core WebAssembly module that exports `_start` and
// `memory` and imports only from module `hookwise` (the core module ABI, see the plugins
// guide). Build it with
//
//   asc assembly/index.ts -O3 --noAssert --runtime incremental \
//     --use abort=sdk/hookwise/hookwise_abort -o plugin.wasm
//
// (`--use abort=...` keeps asc from importing `env.abort`, which hookwise does not provide;
// `hookwise_abort` below logs the abort's message and place, then traps).
//
//   import * as hw from "./hookwise";
//
//   export function _start(): void {
//     const req = hw.Request.read();
//     const name = req.input.getString("name");
//     if (name == null) { hw.fatal("input lacks `name`"); return; }
//     hw.info("hello " + name! + ", event " + req.event.id);
//     hw.ok(new hw.JsonObject().str("greeted", name).toString());
//   }
//
// * `Request.read()` gives `ctx`, `event` (the payload as a `JsonValue`) and `input`.
// * `trace` .. `error` log one line.
// * `http` sends a request (needs `allow.http`), `db` runs one statement (needs `allow.db`);
//   both return null when the host refuses or the call fails, and `lastError()` says why.
// * `ok(json)` answers, `fatal(msg)` / `retryable(msg, afterMs)` fail the call. The first answer
//   wins; return from `_start` after it.
// * JSON: `parseJson(text)` reads any JSON document into a `JsonValue` tree;
//   `JsonObject` / `JsonArray` write JSON (strings escaped). Limits of this small JSON code:
//   numbers are kept as f64 (plus their text, so `asI64()` is exact for integers up to
//   2^63), duplicate object keys keep the last value, and invalid JSON gives null. There is
//   no typed (de)serialisation: read fields with `get`/`getString`/`getNumber`/`at`.

// ---------- the raw imports ----------

@external("hookwise", "request_read")
declare function hw_request_read(ptr: usize, cap: i32): i32;
@external("hookwise", "output")
declare function hw_output(ptr: usize, len: i32): void;
@external("hookwise", "error")
declare function hw_error(kind: i32, ptr: usize, len: i32, retry_after_ms: i64): void;
@external("hookwise", "log")
declare function hw_log(level: i32, ptr: usize, len: i32): void;
@external("hookwise", "http_send")
declare function hw_http_send(ptr: usize, len: i32): i32;
@external("hookwise", "db_execute")
declare function hw_db_execute(
  conn_ptr: usize,
  conn_len: i32,
  sql_ptr: usize,
  sql_len: i32,
  params_ptr: usize,
  params_len: i32,
): i32;
@external("hookwise", "result_read")
declare function hw_result_read(ptr: usize, cap: i32): i32;

// ---------- JSON: reading ----------

export enum JsonKind {
  Null,
  Bool,
  Number,
  String,
  Array,
  Object,
}

/** One JSON value. Getters give null (or a default) when the value has another kind. */
export class JsonValue {
  kind: JsonKind = JsonKind.Null;
  boolValue: bool = false;
  numberValue: f64 = 0;
  /** The string's value, or a number's text as written. */
  text: string = "";
  items: JsonValue[] = [];
  keys: string[] = [];
  values: Map<string, JsonValue> = new Map<string, JsonValue>();

  isNull(): bool {
    return this.kind == JsonKind.Null;
  }

  /** The member `key` of an object, or null. */
  get(key: string): JsonValue | null {
    if (this.kind != JsonKind.Object || !this.values.has(key)) return null;
    return this.values.get(key);
  }

  /** The value at a dotted path of object keys (`"pusher.name"`), or null. */
  at(path: string): JsonValue | null {
    const parts = path.split(".");
    let v: JsonValue | null = this;
    for (let i = 0; i < parts.length; i++) {
      if (v == null) return null;
      v = v.get(parts[i]);
    }
    return v;
  }

  /** `get(key)` when it is a string, else null. */
  getString(key: string): string | null {
    const v = this.at(key);
    return v != null && v.kind == JsonKind.String ? v.text : null;
  }

  /** `get(key)` when it is a number, else `fallback`. */
  getNumber(key: string, fallback: f64 = 0): f64 {
    const v = this.at(key);
    return v != null && v.kind == JsonKind.Number ? v.numberValue : fallback;
  }

  /** `get(key)` when it is an integer, else `fallback`. */
  getI64(key: string, fallback: i64 = 0): i64 {
    const v = this.at(key);
    return v != null && v.kind == JsonKind.Number ? v.asI64() : fallback;
  }

  /** `get(key)` when it is a boolean, else `fallback`. */
  getBool(key: string, fallback: bool = false): bool {
    const v = this.at(key);
    return v != null && v.kind == JsonKind.Bool ? v.boolValue : fallback;
  }

  /** A number as i64: exact when it was written as an integer. */
  asI64(): i64 {
    if (this.kind != JsonKind.Number) return 0;
    const t = this.text;
    let integral = t.length > 0;
    for (let i = 0; i < t.length; i++) {
      const c = t.charCodeAt(i);
      if (!(c == 45 || (c >= 48 && c <= 57))) integral = false;
    }
    return integral ? I64.parseInt(t, 10) : <i64>this.numberValue;
  }

  /** The value written back as JSON. */
  toString(): string {
    switch (this.kind) {
      case JsonKind.Null:
        return "null";
      case JsonKind.Bool:
        return this.boolValue ? "true" : "false";
      case JsonKind.Number:
        return this.text;
      case JsonKind.String:
        return jsonString(this.text);
      case JsonKind.Array: {
        const parts = new Array<string>(this.items.length);
        for (let i = 0; i < this.items.length; i++) parts[i] = this.items[i].toString();
        return "[" + parts.join(",") + "]";
      }
      default: {
        const parts = new Array<string>(this.keys.length);
        for (let i = 0; i < this.keys.length; i++) {
          const k = this.keys[i];
          parts[i] = jsonString(k) + ":" + this.values.get(k).toString();
        }
        return "{" + parts.join(",") + "}";
      }
    }
  }
}

class Parser {
  pos: i32 = 0;
  failed: bool = false;
  depth: i32 = 0;
  constructor(public s: string) {}

  ws(): void {
    while (this.pos < this.s.length) {
      const c = this.s.charCodeAt(this.pos);
      if (c == 32 || c == 9 || c == 10 || c == 13) this.pos++;
      else break;
    }
  }

  fail(): JsonValue {
    this.failed = true;
    return new JsonValue();
  }

  literal(word: string): bool {
    if (this.s.substr(this.pos, word.length) == word) {
      this.pos += word.length;
      return true;
    }
    return false;
  }

  value(): JsonValue {
    this.ws();
    if (this.pos >= this.s.length || this.depth > 128) return this.fail();
    const c = this.s.charCodeAt(this.pos);
    const v = new JsonValue();
    if (c == 123) {
      // {
      this.pos++;
      this.depth++;
      v.kind = JsonKind.Object;
      this.ws();
      if (this.pos < this.s.length && this.s.charCodeAt(this.pos) == 125) {
        this.pos++;
        this.depth--;
        return v;
      }
      while (!this.failed) {
        this.ws();
        if (this.pos >= this.s.length || this.s.charCodeAt(this.pos) != 34) return this.fail();
        const key = this.string();
        this.ws();
        if (this.pos >= this.s.length || this.s.charCodeAt(this.pos) != 58) return this.fail();
        this.pos++;
        const member = this.value();
        if (!v.values.has(key)) v.keys.push(key);
        v.values.set(key, member);
        this.ws();
        if (this.pos >= this.s.length) return this.fail();
        const d = this.s.charCodeAt(this.pos++);
        if (d == 125) break;
        if (d != 44) return this.fail();
      }
      this.depth--;
      return v;
    }
    if (c == 91) {
      // [
      this.pos++;
      this.depth++;
      v.kind = JsonKind.Array;
      this.ws();
      if (this.pos < this.s.length && this.s.charCodeAt(this.pos) == 93) {
        this.pos++;
        this.depth--;
        return v;
      }
      while (!this.failed) {
        v.items.push(this.value());
        this.ws();
        if (this.pos >= this.s.length) return this.fail();
        const d = this.s.charCodeAt(this.pos++);
        if (d == 93) break;
        if (d != 44) return this.fail();
      }
      this.depth--;
      return v;
    }
    if (c == 34) {
      v.kind = JsonKind.String;
      v.text = this.string();
      return v;
    }
    if (this.literal("true")) {
      v.kind = JsonKind.Bool;
      v.boolValue = true;
      return v;
    }
    if (this.literal("false")) {
      v.kind = JsonKind.Bool;
      return v;
    }
    if (this.literal("null")) return v;
    // A number: -?digits[.digits][e[+-]digits]
    const start = this.pos;
    while (this.pos < this.s.length) {
      const d = this.s.charCodeAt(this.pos);
      if ((d >= 48 && d <= 57) || d == 45 || d == 43 || d == 46 || d == 101 || d == 69) this.pos++;
      else break;
    }
    if (this.pos == start) return this.fail();
    v.kind = JsonKind.Number;
    v.text = this.s.substring(start, this.pos);
    v.numberValue = parseFloat(v.text);
    if (isNaN(v.numberValue)) return this.fail();
    return v;
  }

  hex4(): i32 {
    if (this.pos + 4 > this.s.length) {
      this.failed = true;
      return 0;
    }
    const n = I32.parseInt(this.s.substr(this.pos, 4), 16);
    this.pos += 4;
    return n;
  }

  /** A string starting at the opening quote; the position ends after the closing one. */
  string(): string {
    this.pos++; // "
    let out = "";
    let from = this.pos;
    while (this.pos < this.s.length) {
      const c = this.s.charCodeAt(this.pos);
      if (c == 34) {
        out += this.s.substring(from, this.pos);
        this.pos++;
        return out;
      }
      if (c == 92) {
        out += this.s.substring(from, this.pos);
        this.pos++;
        if (this.pos >= this.s.length) break;
        const e = this.s.charCodeAt(this.pos++);
        if (e == 110) out += "\n";
        else if (e == 116) out += "\t";
        else if (e == 114) out += "\r";
        else if (e == 98) out += "\b";
        else if (e == 102) out += "\f";
        else if (e == 117) out += String.fromCharCode(this.hex4());
        else out += String.fromCharCode(e); // \" \\ \/
        from = this.pos;
        continue;
      }
      this.pos++;
    }
    this.failed = true;
    return out;
  }
}

/** Parses a JSON document; null when it is not valid JSON. */
export function parseJson(text: string): JsonValue | null {
  const p = new Parser(text);
  const v = p.value();
  p.ws();
  if (p.failed || p.pos != text.length) return null;
  return v;
}

// ---------- JSON: writing ----------

const HEX = "0123456789abcdef";

/** `s` as a JSON string literal, quotes and escapes included. */
export function jsonString(s: string): string {
  let out = '"';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 32 && c != 34 && c != 92) continue;
    out += s.substring(from, i);
    from = i + 1;
    if (c == 34) out += '\\"';
    else if (c == 92) out += "\\\\";
    else if (c == 10) out += "\\n";
    else if (c == 13) out += "\\r";
    else if (c == 9) out += "\\t";
    else out += "\\u00" + HEX.charAt(c >> 4) + HEX.charAt(c & 15);
  }
  return out + s.substring(from) + '"';
}

/** Writes a JSON object: `new JsonObject().str("a", "x").int("n", 1).toString()`. */
export class JsonObject {
  private parts: string[] = [];

  raw(key: string, json: string): JsonObject {
    this.parts.push(jsonString(key) + ":" + json);
    return this;
  }
  str(key: string, value: string | null): JsonObject {
    return this.raw(key, value == null ? "null" : jsonString(value));
  }
  int(key: string, value: i64): JsonObject {
    return this.raw(key, value.toString());
  }
  num(key: string, value: f64): JsonObject {
    return this.raw(key, isFinite(value) ? value.toString() : "null");
  }
  bool(key: string, value: bool): JsonObject {
    return this.raw(key, value ? "true" : "false");
  }
  nil(key: string): JsonObject {
    return this.raw(key, "null");
  }
  toString(): string {
    return "{" + this.parts.join(",") + "}";
  }
}

/** Writes a JSON array: `new JsonArray().str("x").int(2).toString()`. */
export class JsonArray {
  private parts: string[] = [];

  raw(json: string): JsonArray {
    this.parts.push(json);
    return this;
  }
  str(value: string | null): JsonArray {
    return this.raw(value == null ? "null" : jsonString(value));
  }
  int(value: i64): JsonArray {
    return this.raw(value.toString());
  }
  num(value: f64): JsonArray {
    return this.raw(isFinite(value) ? value.toString() : "null");
  }
  bool(value: bool): JsonArray {
    return this.raw(value ? "true" : "false");
  }
  nil(): JsonArray {
    return this.raw("null");
  }
  toString(): string {
    return "[" + this.parts.join(",") + "]";
  }
}

// ---------- the request ----------

export class Context {
  ruleId: string = "";
  actionIndex: i64 = 0;
  attempt: i64 = 0;
  idempotencyKey: string = "";
}

export class Event {
  id: string = "";
  source: string = "";
  eventType: string = "";
  receivedAt: string = "";
  /** `[["name", "value"], ...]`. */
  headers: JsonValue = new JsonValue();
  payload: JsonValue = new JsonValue();

  /** The first header named `name` (case-insensitive), or null. */
  header(name: string): string | null {
    const want = name.toLowerCase();
    for (let i = 0; i < this.headers.items.length; i++) {
      const pair = this.headers.items[i];
      if (pair.items.length == 2 && pair.items[0].text.toLowerCase() == want) return pair.items[1].text;
    }
    return null;
  }
}

export class Request {
  ctx: Context = new Context();
  event: Event = new Event();
  /** The rule's rendered `with:` for this action. */
  input: JsonValue = new JsonValue();
  /** The whole request as JSON. */
  raw: JsonValue = new JsonValue();

  /** Reads the call's request (an empty one if it cannot be read). */
  static read(): Request {
    const n = hw_request_read(0, 0);
    const r = new Request();
    if (n <= 0) return r;
    const buf = new ArrayBuffer(n);
    hw_request_read(changetype<usize>(buf), n);
    const root = parseJson(String.UTF8.decode(buf));
    if (root == null) return r;
    r.raw = root;
    const ctx = root.get("ctx");
    if (ctx != null) {
      r.ctx.ruleId = orEmpty(ctx.getString("rule_id"));
      r.ctx.actionIndex = ctx.getI64("action_index");
      r.ctx.attempt = ctx.getI64("attempt");
      r.ctx.idempotencyKey = orEmpty(ctx.getString("idempotency_key"));
    }
    const event = root.get("event");
    if (event != null) {
      r.event.id = orEmpty(event.getString("id"));
      r.event.source = orEmpty(event.getString("source"));
      r.event.eventType = orEmpty(event.getString("event_type"));
      r.event.receivedAt = orEmpty(event.getString("received_at"));
      const headers = event.get("headers");
      if (headers != null) r.event.headers = headers;
      const payload = event.get("payload");
      if (payload != null) r.event.payload = payload;
    }
    const input = root.get("input");
    if (input != null) r.input = input;
    return r;
  }
}

function orEmpty(s: string | null): string {
  return s == null ? "" : s;
}

// ---------- logs ----------

export function log(level: i32, message: string): void {
  const bytes = String.UTF8.encode(message);
  hw_log(level, changetype<usize>(bytes), bytes.byteLength);
}
export function trace(message: string): void {
  log(0, message);
}
export function debug(message: string): void {
  log(1, message);
}
export function info(message: string): void {
  log(2, message);
}
export function warn(message: string): void {
  log(3, message);
}
export function error(message: string): void {
  log(4, message);
}

// ---------- results of http / db ----------

let lastErrorText = "";

/** Why the last `http` / `db` returned null. */
export function lastError(): string {
  return lastErrorText;
}

/** The result of the last call that returned `n`, or null (with `lastError()`) when n < 0. */
function readResult(n: i32): JsonValue | null {
  const len = n < 0 ? -n : n;
  const buf = new ArrayBuffer(len);
  hw_result_read(changetype<usize>(buf), len);
  const text = String.UTF8.decode(buf);
  if (n < 0) {
    lastErrorText = text;
    return null;
  }
  const v = parseJson(text);
  if (v == null) lastErrorText = "hookwise answered JSON this SDK cannot read";
  return v;
}

// ---------- HTTP ----------

export class HttpRequest {
  method: string = "GET";
  url: string = "";
  /** `[name, value]` pairs. */
  headers: string[][] = [];
  /** Text body, or null for none. For bytes, base64-encode them into `bodyBase64`. */
  body: string | null = null;
  bodyBase64: string | null = null;

  constructor(method: string, url: string) {
    this.method = method;
    this.url = url;
  }

  header(name: string, value: string): HttpRequest {
    this.headers.push([name, value]);
    return this;
  }

  /** Sets the body and, unless set already, `content-type: application/json`. */
  json(body: string): HttpRequest {
    let typed = false;
    for (let i = 0; i < this.headers.length; i++) {
      if (this.headers[i][0].toLowerCase() == "content-type") typed = true;
    }
    if (!typed) this.header("content-type", "application/json");
    this.body = body;
    return this;
  }

  toJson(): string {
    const headers = new JsonArray();
    for (let i = 0; i < this.headers.length; i++) {
      headers.raw(new JsonArray().str(this.headers[i][0]).str(this.headers[i][1]).toString());
    }
    const o = new JsonObject().str("method", this.method).str("url", this.url).raw("headers", headers.toString());
    if (this.body != null) o.str("body", this.body);
    if (this.bodyBase64 != null) o.str("body_base64", this.bodyBase64);
    return o.toString();
  }
}

export class HttpResponse {
  status: i32 = 0;
  /** `[["name", "value"], ...]`. */
  headers: JsonValue = new JsonValue();
  /** The body when it is UTF-8 text, else null and `bodyBase64` holds it. */
  body: string | null = null;
  bodyBase64: string | null = null;

  /** The first header named `name` (case-insensitive), or null. */
  header(name: string): string | null {
    const want = name.toLowerCase();
    for (let i = 0; i < this.headers.items.length; i++) {
      const pair = this.headers.items[i];
      if (pair.items.length == 2 && pair.items[0].text.toLowerCase() == want) return pair.items[1].text;
    }
    return null;
  }

  /** 5xx and 429: worth trying again later. */
  isRetryable(): bool {
    return this.status >= 500 || this.status == 429;
  }
}

/**
 * Sends one request through the plugin's `allow.http` grant and reads the whole answer. Any
 * status is a response; null (with `lastError()`) when it was refused or no answer came.
 */
export function http(request: HttpRequest): HttpResponse | null {
  const bytes = String.UTF8.encode(request.toJson());
  const v = readResult(hw_http_send(changetype<usize>(bytes), bytes.byteLength));
  if (v == null) return null;
  const r = new HttpResponse();
  r.status = <i32>v.getI64("status");
  const headers = v.get("headers");
  if (headers != null) r.headers = headers;
  r.body = v.getString("body");
  r.bodyBase64 = v.getString("body_base64");
  return r;
}

// ---------- database ----------

export class DbResult {
  /** Rows of a statement that returns rows: an array of objects by column name. */
  rows: JsonValue = new JsonValue();
  rowsAffected: i64 = 0;
  /** More rows existed than the per-statement limit. */
  truncated: bool = false;
  /** An earlier attempt with this idempotency key committed already; nothing ran. */
  alreadyApplied: bool = false;
}

/**
 * Runs one statement on the granted connection `connection` (`allow.db`); `params` is a JSON
 * array (`new JsonArray().str("a").int(1)`) bound to `?` / `$1` placeholders. Every statement of
 * one call is one transaction, committed only when the call succeeds. Null (with
 * `lastError()`) when the statement fails; the transaction is then rolled back and the call
 * fails (retryable, with the database's error) whatever the plugin answers afterwards.
 */
export function db(connection: string, sql: string, params: JsonArray): DbResult | null {
  const c = String.UTF8.encode(connection);
  const s = String.UTF8.encode(sql);
  const p = String.UTF8.encode(params.toString());
  const v = readResult(
    hw_db_execute(
      changetype<usize>(c),
      c.byteLength,
      changetype<usize>(s),
      s.byteLength,
      changetype<usize>(p),
      p.byteLength,
    ),
  );
  if (v == null) return null;
  const r = new DbResult();
  const rows = v.get("rows");
  if (rows != null) r.rows = rows;
  r.rowsAffected = v.getI64("rows_affected");
  r.truncated = v.getBool("truncated");
  r.alreadyApplied = v.getBool("already_applied");
  return r;
}

// ---------- the answer ----------

/** The call succeeds with this output JSON (`new JsonObject()...toString()`). */
export function ok(json: string): void {
  const bytes = String.UTF8.encode(json);
  hw_output(changetype<usize>(bytes), bytes.byteLength);
}

/** The call fails for good: no retry, the execution is dead-lettered. */
export function fatal(message: string): void {
  const bytes = String.UTF8.encode(message);
  hw_error(1, changetype<usize>(bytes), bytes.byteLength, -1);
}

/** The call fails and is tried again later, after `retryAfterMs` when >= 0 (the rule's back-off otherwise). */
export function retryable(message: string, retryAfterMs: i64 = -1): void {
  const bytes = String.UTF8.encode(message);
  hw_error(0, changetype<usize>(bytes), bytes.byteLength, retryAfterMs);
}

/**
 * asc's abort handler (build with `--use abort=<path of this file>/hookwise_abort`, e.g.
 * `sdk/hookwise/hookwise_abort` for `sdk/hookwise.ts`, relative to where asc runs): a failed
 * assertion, a `throw` or an index out of range logs an error line naming the place, then
 * traps. A trap fails the call for good, whatever was answered before it.
 */
export function hookwise_abort(message: usize, fileName: usize, line: u32, column: u32): void {
  let text = "abort";
  if (message != 0) text += ": " + changetype<string>(message);
  if (fileName != 0) text += " at " + changetype<string>(fileName) + ":" + line.toString() + ":" + column.toString();
  log(4, text);
  unreachable();
}
