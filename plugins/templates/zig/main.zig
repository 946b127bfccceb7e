//! __NAME__: a hookwise plugin in Zig.
//!
//! Input (the rule's `with:`):
//!   channel  (string, required)  where the summary is meant to go
//!   url      (string, optional)  when given, the summary is POSTed there (grant it in the
//!                                config: `allow: { http: ["https://host"] }`)
//!
//! Output: {"channel", "text", "ref", "commits", "posted"}.
//!
//! Errors: an input without `channel` is fatal (retrying cannot fix it); a 5xx/429 answer
//! from `url`, or no answer at all, is retryable (hookwise tries again with back-off).

const std = @import("std");
const hw = @import("hookwise");

pub fn main() void {
    // One arena for the whole call: the module runs once per call, so nothing is freed early.
    var arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
    defer arena.deinit();
    handle(arena.allocator()) catch |e| hw.fail(e);
}

fn handle(a: std.mem.Allocator) hw.Error!void {
    const req = try hw.Request.read(a);

    // The input.
    const channel = req.inputString("channel") orelse return hw.fatal("input lacks `channel`");

    // The payload (a GitHub push here): values by dotted path.
    const pusher = req.payloadString("pusher.name") orelse "someone";
    const ref = req.payloadString("ref") orelse "";
    const branch = if (std.mem.startsWith(u8, ref, "refs/heads/")) ref["refs/heads/".len..] else ref;
    const commits: usize = if (hw.path(req.event.payload, "commits")) |c| switch (c) {
        .array => |list| list.items.len,
        else => 0,
    } else 0;

    const text = try std.fmt.allocPrint(a, "{s} pushed {d} commit(s) to {s}", .{ pusher, commits, branch });
    hw.info(a, "event {s}: {s}", .{ req.event.id, text });

    // Optional: POST the summary (needs `allow.http` for that host).
    var posted = false;
    if (req.inputString("url")) |url| {
        const body = try std.json.Stringify.valueAlloc(a, .{ .channel = channel, .text = text }, .{});
        const response = try hw.http(a, .{
            .method = "POST",
            .url = url,
            .headers = &.{.{ "content-type", "application/json" }},
            .body = body,
        });
        if (response.isRetryable()) {
            return hw.retryablef(a, null, "{s} answered {d}", .{ url, response.status });
        }
        if (response.status >= 400) {
            return hw.fatalf(a, "{s} refused the summary: {d}", .{ url, response.status });
        }
        posted = true;
    }

    hw.ok(a, .{
        .channel = channel,
        .text = text,
        .ref = ref,
        .commits = commits,
        .posted = posted,
    });
}
