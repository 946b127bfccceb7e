"""__NAME__: a hookwise plugin in Python (a component made by componentize-py).

A worked example to change: it reads its input (`with:` in a rule), reads the GitHub push in
the event's payload, logs, and returns an output that hookwise records. It shows both kinds of
error: fatal (a bad input: retrying cannot help) and retryable (hookwise tries again later).

How componentize-py maps the contract (wit/plugin.wit):
- the world's exports are methods of a class named `WitWorld` in this module;
- `event.payload` and `input` are JSON text; return `Outcome(json_text)`;
- raising `Err(PluginError(...))` is the error result; any other exception traps.
"""

import json

from componentize_py_types import Err
from wit_world import WitWorld as Exports
from wit_world.imports import log
from wit_world.imports.hookwise_plugin_types import (
    Context,
    ErrorKind,
    Event,
    Outcome,
    PluginError,
)


class WitWorld(Exports):
    def handle(self, ctx: Context, event: Event, input: str) -> Outcome:
        params = json.loads(input)
        greeting = params.get("greeting")
        if not isinstance(greeting, str):
            raise Err(PluginError(ErrorKind.FATAL, 'the input needs a "greeting" string', None))
        if params.get("simulate") == "outage":
            raise Err(PluginError(ErrorKind.RETRYABLE, "the service is down; try again later", 30000))
        payload = json.loads(event.payload)
        pusher = (payload.get("pusher") or {}).get("name")
        if not isinstance(pusher, str):
            raise Err(PluginError(ErrorKind.FATAL, "the payload has no pusher.name: not a push?", None))
        commits = len(payload.get("commits") or [])
        repository = (payload.get("repository") or {}).get("full_name", "?")
        log.log(
            log.Level.INFO,
            f"event {event.id} (attempt {ctx.attempt}): {pusher} pushed {commits} commit(s) to {repository}",
        )
        return Outcome(json.dumps({"message": f"{greeting} {pusher}: {commits} commit(s) to {repository}"}))
