"""The Python example plugin (componentize-py).

For a GitHub push it logs, POSTs a summary to `input.url` (through the plugin's `allow.http`
grant, with the `wasi:http` bindings componentize-py generates), records the push as a row of
`input.table` on `input.connection` (`allow.db`, through the `hookwise:plugin/db` import), and
answers what it did. Every language's example follows this contract (see
plugins/examples/go/main.go).

    input: {"url": "https://...", "connection": "app", "table": "pushes"}

The table needs the columns (event_id, repository, pusher, commits); `?` placeholders (SQLite,
MySQL). Without `connection` and `table` the plugin only logs and POSTs. A missing input key is
a fatal error; an HTTP answer of 429 or 5xx is a retryable one (honouring a Retry-After of
seconds); any other non-2xx answer is fatal.

How componentize-py maps the WIT export
    handle: func(ctx: context, event: event, input: string) -> result<outcome, plugin-error>
- the world's exports are methods of a class named `WitWorld` in the app module;
- returning an `Outcome` is `ok`; raising `Err(PluginError(...))` is `err`;
- an import returning `result<T, E>` returns T or raises `Err(E)`;
- any other exception traps (the host reports a trap, not a plugin error).

Generate the typed bindings to read next to this file with
`componentize-py -d ../../wit -w plugin bindings bindings/`.
"""

import json
import re
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import WitWorld as Exports
from wit_world.imports import db, log, outgoing_handler
from wit_world.imports import wasi_http_types as http
from wit_world.imports.hookwise_plugin_types import (
    Context,
    ErrorKind,
    Event,
    Outcome,
    PluginError,
)
from wit_world.imports.streams import StreamError_Closed

# Largest chunk handed to one `blocking-write-and-flush` (the WASI limit is 4096 bytes).
WRITE_CHUNK = 4096
# Bytes asked for per read of the response body, and the most of it kept.
READ_CHUNK = 16 * 1024
MAX_ANSWER = 64 * 1024
# How much of a refusing receiver's answer goes into the error message.
CLIP_CHARS = 200
# A table name cannot be a bound parameter: plain identifiers only.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def fatal(message: str) -> Err:
    return Err(PluginError(ErrorKind.FATAL, message, None))


def retryable(message: str, after_ms: Optional[int] = None) -> Err:
    return Err(PluginError(ErrorKind.RETRYABLE, message, after_ms))


class Response:
    def __init__(self, status: int, headers: List[Tuple[str, bytes]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[str]:
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("utf-8", "replace")
        return None


def post_json(url: str, body: bytes) -> Response:
    """POSTs `body` as JSON and blocks until the whole answer is read (at most MAX_ANSWER bytes
    of it are kept). Raises `Err(error-code)` when there is no answer."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise Err(f"not an absolute URL: {url}")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if not path.startswith("/"):
        path = "/" + path
    headers = http.Fields.from_list(
        [("content-type", b"application/json"), ("content-length", str(len(body)).encode())]
    )
    request = http.OutgoingRequest(headers)
    request.set_method(http.Method_Post())
    request.set_scheme(
        {"http": http.Scheme_Http(), "https": http.Scheme_Https()}.get(scheme, http.Scheme_Other(scheme))
    )
    request.set_authority(authority)
    request.set_path_with_query(path)
    outgoing = request.body()
    future = outgoing_handler.handle(request, None)
    # The body streams while the host sends the request; the stream must be gone before
    # `finish`. A failed write usually means the host refused or failed the request: the
    # response future says why, so it is consulted first.
    write_error = None
    try:
        with outgoing.write() as stream:
            for at in range(0, len(body), WRITE_CHUNK):
                stream.blocking_write_and_flush(body[at : at + WRITE_CHUNK])
        http.OutgoingBody.finish(outgoing, None)
    except Err as e:
        write_error = e
    with future:
        while True:
            result = future.get()
            if result is not None:
                break
            with future.subscribe() as ready:
                ready.block()
    # Some(Ok(Ok(response))) or Some(Ok(Err(error-code))); Some(Err) when it was taken already.
    if isinstance(result, Err):
        raise Err("the response was already taken")
    if isinstance(result.value, Err):
        raise result.value
    if write_error is not None:
        raise write_error
    with result.value.value as response:
        status = response.status()
        with response.headers() as fields:
            entries = fields.entries()
        incoming = response.consume()
        answer = bytearray()
        with incoming.stream() as stream:
            while True:
                try:
                    chunk = stream.blocking_read(READ_CHUNK)
                except Err as e:
                    if isinstance(e.value, StreamError_Closed):
                        break
                    raise
                if len(answer) < MAX_ANSWER:
                    answer.extend(chunk[: MAX_ANSWER - len(answer)])
        with http.IncomingBody.finish(incoming):
            pass
    return Response(status, entries, bytes(answer))


def present(params: dict, key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or value == "":
        raise fatal(f"input.{key} is missing")
    return value


def retry_after_ms(value: Optional[str]) -> Optional[int]:
    """A Retry-After of seconds in milliseconds (an HTTP date is not honoured: no hint)."""
    try:
        secs = int((value or "").strip())
    except ValueError:
        return None
    return secs * 1000 if secs > 0 else None


class WitWorld(Exports):
    def handle(self, ctx: Context, event: Event, input: str) -> Outcome:
        try:
            params = json.loads(input)
        except ValueError as e:
            raise fatal(f"input is not JSON: {e}")
        if not isinstance(params, dict):
            raise fatal("input is not a JSON object")
        url = present(params, "url")
        # Both or neither: without them the plugin only logs and POSTs.
        target = None
        if "connection" in params or "table" in params:
            target = (present(params, "connection"), present(params, "table"))
            if not IDENTIFIER.fullmatch(target[1]):
                raise fatal(f"input.table {json.dumps(target[1])} is not a plain identifier")
        try:
            push = json.loads(event.payload)
        except ValueError as e:
            raise fatal(f"the payload is not JSON: {e}")
        push = push if isinstance(push, dict) else {}
        repository = (push.get("repository") or {}).get("full_name") or "unknown"
        pusher = (push.get("pusher") or {}).get("name") or "someone"
        commits = push.get("commits")
        commits = len(commits) if isinstance(commits, list) else 0
        log.log(
            log.Level.INFO,
            f"python plugin: {pusher} pushed {commits} commit(s) to {repository} "
            f"(event {event.id}, attempt {ctx.attempt})",
        )

        text = f"{pusher} pushed {commits} commit(s) to {repository}"
        body = {
            "text": text,
            "repository": repository,
            "ref": push.get("ref") or "",
            "after": push.get("after") or "",
            "event_id": event.id,
        }
        try:
            response = post_json(url, json.dumps(body).encode())
        except Err as e:
            raise retryable(f"POST {url}: {e.value}")
        status = response.status
        if status == 429 or status >= 500:
            raise retryable(
                f"the receiver answered {status}", retry_after_ms(response.header("retry-after"))
            )
        if status < 200 or status > 299:
            answer = response.body.decode("utf-8", "replace")
            clipped = answer if len(answer) <= CLIP_CHARS else answer[:CLIP_CHARS] + "..."
            raise fatal(f"the receiver answered {status}: {clipped}")
        log.log(log.Level.DEBUG, f"python plugin: the receiver answered {status}")

        output = {"posted": {"url": url, "status": status}, "text": text}
        if target is not None:
            connection, table = target
            try:
                result = json.loads(
                    db.execute(
                        connection,
                        f"INSERT INTO {table} (event_id, repository, pusher, commits) VALUES (?, ?, ?, ?)",
                        json.dumps([event.id, repository, pusher, commits]),
                    )
                )
            except Err as e:
                raise retryable(str(e.value))
            output["inserted"] = {
                "connection": connection,
                "table": table,
                "rows_affected": result.get("rows_affected", 0),
                "already_applied": result.get("already_applied") is True,
            }
        return Outcome(json.dumps(output))
