// __NAME__: a hookwise plugin in AssemblyScript.
//
// Input (the rule's `with:`):
//   channel  (string, required)  where the summary is meant to go
//   url      (string, optional)  when given, the summary is POSTed there (grant it in the
//                                config: `allow: { http: ["https://host"] }`)
//
// Output: {"channel", "text", "ref", "commits", "posted"}.
//
// Errors: an input without `channel` is fatal (retrying cannot fix it); a 5xx/429 answer
// from `url`, or no answer at all, is retryable (hookwise tries again with back-off).

import * as hw from "../sdk/hookwise";

// hookwise runs `_start` once per call.
export function _start(): void {
  const req = hw.Request.read();

  // The input.
  const channel = req.input.getString("channel");
  if (channel == null) return hw.fatal("input lacks `channel`");

  // The payload (a GitHub push here): values by dotted path.
  let pusher = req.event.payload.getString("pusher.name");
  if (pusher == null) pusher = "someone";
  let ref = req.event.payload.getString("ref");
  if (ref == null) ref = "";
  const branch = ref.startsWith("refs/heads/") ? ref.substring(11) : ref;
  const list = req.event.payload.get("commits");
  const commits = list == null ? 0 : list.items.length;

  const text = pusher + " pushed " + commits.toString() + " commit(s) to " + branch;
  hw.info("event " + req.event.id + ": " + text);

  // Optional: POST the summary (needs `allow.http` for that host).
  let posted = false;
  const url = req.input.getString("url");
  if (url != null) {
    const body = new hw.JsonObject().str("channel", channel).str("text", text).toString();
    const response = hw.http(new hw.HttpRequest("POST", url).json(body));
    if (response == null) return hw.retryable("POST " + url + " failed: " + hw.lastError());
    if (response.isRetryable()) return hw.retryable(url + " answered " + response.status.toString());
    if (response.status >= 400) return hw.fatal(url + " refused the summary: " + response.status.toString());
    posted = true;
  }

  hw.ok(
    new hw.JsonObject()
      .str("channel", channel)
      .str("text", text)
      .str("ref", ref)
      .int("commits", commits)
      .bool("posted", posted)
      .toString(),
  );
}
