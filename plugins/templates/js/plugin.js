// __NAME__: a hookwise plugin in JavaScript (a component made by componentize-js).
//
// A worked example to change: it reads its input (`with:` in a rule), reads the GitHub push in
// the event's payload, logs, and returns an output that hookwise records. It shows both kinds of
// error: fatal (a bad input: retrying cannot help) and retryable (hookwise tries again later).
//
// How componentize-js maps the contract (wit/plugin.wit):
// - `handle(ctx, event, input)`; names are camelCased: `ctx.idempotencyKey`, `event.eventType`;
// - `event.payload` and `input` are JSON text; return `{ output: JSON text }`;
// - throwing a PluginError (below) is the error result;
// - `fetch()` goes through the host, which allows only the hosts granted in `allow.http`.

import { log } from 'hookwise:plugin/log@0.1.0';

/** An error result; `kind` is 'retryable' or 'fatal'. */
class PluginError extends Error {
  constructor(kind, message, retryAfterMs) {
    super(message);
    this.payload = { kind, message, retryAfterMs };
  }
}

export function handle(ctx, event, inputJson) {
  const input = JSON.parse(inputJson);
  if (typeof input.greeting !== 'string') {
    throw new PluginError('fatal', 'the input needs a "greeting" string');
  }
  if (input.simulate === 'outage') {
    throw new PluginError('retryable', 'the service is down; try again later', 30000n);
  }
  const payload = JSON.parse(event.payload);
  const pusher = payload.pusher && payload.pusher.name;
  if (typeof pusher !== 'string') {
    throw new PluginError('fatal', 'the payload has no pusher.name: not a push?');
  }
  const commits = Array.isArray(payload.commits) ? payload.commits.length : 0;
  const repository = (payload.repository && payload.repository.full_name) || '?';
  log('info', `event ${event.id} (attempt ${ctx.attempt}): ${pusher} pushed ${commits} commit(s) to ${repository}`);
  return {
    output: JSON.stringify({ message: `${input.greeting} ${pusher}: ${commits} commit(s) to ${repository}` }),
  };
}
