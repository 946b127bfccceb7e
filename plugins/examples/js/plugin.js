// A hookwise plugin in JavaScript (componentize-js, SpiderMonkey).
//
// Input: {"url": "http://..."}. The plugin fetches the URL through the host,
// which only lets it reach hosts granted in the plugin's `http` grant and adds
// the call's `Idempotency-Key` header, and returns {"status": N, "body": "..."}.
//
// How componentize-js maps the WIT export
//   handle: func(ctx: context, event: event, input: string) -> result<outcome, plugin-error>
// - names are camelCased: `handle(ctx, event, input)`, `ctx.idempotencyKey`,
//   `event.eventType`, `retryAfterMs`;
// - returning a value is `ok(value)`, throwing is `err(...)`: the thrown value
//   (or its `payload` property) must be a `plugin-error` record;
// - an exported function may be async: componentize-js runs the event loop
//   until the promise settles, which is what makes `await fetch()` work.

import { log } from 'hookwise:plugin/log@0.1.0';

/** A `plugin-error` to throw; `kind` is 'retryable' or 'fatal'. */
class PluginError extends Error {
  constructor(kind, message, retryAfterMs) {
    super(message);
    this.payload = { kind, message, retryAfterMs };
  }
}

export async function handle(ctx, event, input) {
  let url;
  try {
    ({ url } = JSON.parse(input));
  } catch (e) {
    throw new PluginError('fatal', `input is not JSON: ${e}`);
  }
  if (typeof url !== 'string') {
    throw new PluginError('fatal', 'input needs a "url" string');
  }
  log('info', `event ${event.id} (attempt ${ctx.attempt}): GET ${url}`);
  let response;
  let body;
  try {
    response = await fetch(url);
    body = await response.text();
  } catch (e) {
    // Refused by the host (not granted), unreachable, timed out, ...: fetch
    // only says "NetworkError"; the host's HTTP record of the call says why.
    // Worth another try later, perhaps after the grant was fixed.
    throw new PluginError('retryable', `fetch ${url} failed: ${e}`, 1000n);
  }
  return { output: JSON.stringify({ status: response.status, body }) };
}
