// The JavaScript example plugin (componentize-js, SpiderMonkey): for a GitHub push it logs,
// POSTs a summary to `input.url` with fetch() (through the plugin's `allow.http` grant), records
// the push as a row of `input.table` on `input.connection` (`allow.db`, through the
// `hookwise:plugin/db` import), and answers what it did. Every language's example follows this
// contract (see plugins/examples/go/main.go).
//
//   input: {"url": "https://...", "connection": "app", "table": "pushes"}
//
// The table needs the columns (event_id, repository, pusher, commits); `?` placeholders (SQLite,
// MySQL). Without `connection` and `table` the plugin only logs and POSTs. A missing input key is
// a fatal error; an HTTP answer of 429 or 5xx is a retryable one (honouring a Retry-After of
// seconds); any other non-2xx answer is fatal.
//
// How componentize-js maps the WIT export
//   handle: func(ctx: context, event: event, input: string) -> result<outcome, plugin-error>
// - names are camelCased: `handle(ctx, event, input)`, `ctx.idempotencyKey`,
//   `event.eventType`, `retryAfterMs` (a u64: a BigInt);
// - returning a value is `ok(value)`, throwing is `err(...)`: the thrown value
//   (or its `payload` property) must be a `plugin-error` record;
// - an imported function returning `result<string, string>` returns the string or throws an
//   error whose `payload` is the error string;
// - an exported function may be async: componentize-js runs the event loop
//   until the promise settles, which is what makes `await fetch()` work.

import { log } from 'hookwise:plugin/log@0.1.0';
import { execute } from 'hookwise:plugin/db@0.1.0';

/** How much of a refusing receiver's answer goes into the error message. */
const CLIP_CHARS = 200;

/** A `plugin-error` to throw; `kind` is 'retryable' or 'fatal'. */
class PluginError extends Error {
  constructor(kind, message, retryAfterMs) {
    super(message);
    this.payload = { kind, message, retryAfterMs };
  }
}

/** The string at `input[key]`, or the fatal error that names the key. */
function present(input, key) {
  const value = input[key];
  if (typeof value !== 'string' || value === '') {
    throw new PluginError('fatal', `input.${key} is missing`);
  }
  return value;
}

/** A table name cannot be a bound parameter: plain identifiers only. */
function identifier(s) {
  return /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(s);
}

/** A Retry-After of seconds in milliseconds (an HTTP date is not honoured: no hint). */
function retryAfterMs(value) {
  const secs = Number.parseInt((value || '').trim(), 10);
  return Number.isFinite(secs) && secs > 0 ? BigInt(secs) * 1000n : undefined;
}

export async function handle(ctx, event, inputJson) {
  let input;
  try {
    input = JSON.parse(inputJson);
  } catch (e) {
    throw new PluginError('fatal', `input is not JSON: ${e}`);
  }
  if (input === null || typeof input !== 'object') {
    throw new PluginError('fatal', 'input is not a JSON object');
  }
  const url = present(input, 'url');
  // Both or neither: without them the plugin only logs and POSTs.
  let target = null;
  if (input.connection !== undefined || input.table !== undefined) {
    target = { connection: present(input, 'connection'), table: present(input, 'table') };
    if (!identifier(target.table)) {
      throw new PluginError('fatal', `input.table ${JSON.stringify(target.table)} is not a plain identifier`);
    }
  }
  let push;
  try {
    push = JSON.parse(event.payload);
  } catch (e) {
    throw new PluginError('fatal', `the payload is not JSON: ${e}`);
  }
  push = push !== null && typeof push === 'object' ? push : {};
  const repository = (push.repository && push.repository.full_name) || 'unknown';
  const pusher = (push.pusher && push.pusher.name) || 'someone';
  const commits = Array.isArray(push.commits) ? push.commits.length : 0;
  log('info', `js plugin: ${pusher} pushed ${commits} commit(s) to ${repository} (event ${event.id}, attempt ${ctx.attempt})`);

  const text = `${pusher} pushed ${commits} commit(s) to ${repository}`;
  const body = JSON.stringify({
    text,
    repository,
    ref: push.ref || '',
    after: push.after || '',
    event_id: event.id,
  });
  let response;
  let answer;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    answer = await response.text();
  } catch (e) {
    // Refused by the host (not granted), unreachable, timed out, ...: fetch
    // only says "NetworkError"; the host's HTTP record of the call says why.
    // Worth another try later, perhaps after the grant was fixed.
    throw new PluginError('retryable', `fetch ${url} failed: ${e}`, 1000n);
  }
  const status = response.status;
  if (status === 429 || status >= 500) {
    throw new PluginError('retryable', `the receiver answered ${status}`, retryAfterMs(response.headers.get('retry-after')));
  }
  if (status < 200 || status > 299) {
    const clipped = answer.length > CLIP_CHARS ? `${answer.slice(0, CLIP_CHARS)}...` : answer;
    throw new PluginError('fatal', `the receiver answered ${status}: ${clipped}`);
  }
  log('debug', `js plugin: the receiver answered ${status}`);

  const output = { posted: { url, status }, text };
  if (target !== null) {
    let result;
    try {
      result = JSON.parse(execute(
        target.connection,
        `INSERT INTO ${target.table} (event_id, repository, pusher, commits) VALUES (?, ?, ?, ?)`,
        JSON.stringify([event.id, repository, pusher, commits]),
      ));
    } catch (e) {
      throw new PluginError('retryable', `${e && e.payload !== undefined ? e.payload : e}`);
    }
    output.inserted = {
      connection: target.connection,
      table: target.table,
      rows_affected: result.rows_affected || 0,
      already_applied: result.already_applied === true,
    };
  }
  return { output: JSON.stringify(output) };
}
