"""A hookwise plugin in Python (componentize-py).

Echoes what the host handed over: the call context, the event id and the
input, and writes one line to the execution log through the `log` import.

How componentize-py maps the WIT export
    handle: func(ctx: context, event: event, input: string) -> result<outcome, plugin-error>
- the world's exports are methods of a class named `WitWorld` in the app module;
- returning an `Outcome` is `ok`; raising `Err(PluginError(...))` is `err`;
- any other exception traps (the host reports a trap, not a plugin error).

Generate the typed bindings to read next to this file with
`componentize-py -d ../../wit -w plugin bindings bindings/`.
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
        try:
            parsed = json.loads(input)
        except ValueError as e:
            raise Err(PluginError(ErrorKind.FATAL, f"input is not JSON: {e}", None))
        log.log(log.Level.INFO, f"python plugin: event {event.id} attempt {ctx.attempt}")
        output = {
            "rule_id": ctx.rule_id,
            "action_index": ctx.action_index,
            "attempt": ctx.attempt,
            "idempotency_key": ctx.idempotency_key,
            "event_id": event.id,
            "event_type": event.event_type,
            "input": parsed,
        }
        return Outcome(json.dumps(output))
