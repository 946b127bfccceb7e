//! The Zig example plugin: for a GitHub push it logs, POSTs a summary to `input.url` (through
//! the plugin's `allow.http` grant), records the push as a row of `input.table` on
//! `input.connection` (`allow.db`), and answers what it did. Every language's example follows
//! this contract (see plugins/examples/go/main.go).
//!
//!   input: {"url": "https://...", "connection": "app", "table": "pushes"}
//!
//! The table needs the columns (event_id, repository, pusher, commits); `?` placeholders
//! (SQLite, MySQL). A missing input key is a fatal error; an HTTP answer of 429 or 5xx is a
//! retryable one (honouring a Retry-After of seconds); any other non-2xx answer is fatal.
//!
//! Build: `plugins/examples/zig/build.sh OUT_DIR` (writes OUT_DIR/zig.wasm).

const std = @import("std");
const hw = @import("hookwise");

/// How much of a refusing receiver's answer goes into the error message.
const clip_bytes = 200;

pub fn main() void {
    var arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
    defer arena.deinit();
    run(arena.allocator()) catch |e| hw.fail(e);
}

fn run(a: std.mem.Allocator) hw.Error!void {
    const req = try hw.Request.read(a);

    const url = present(req, "url") orelse return hw.fatal("input.url is missing");
    const connection = present(req, "connection") orelse return hw.fatal("input.connection is missing");
    const table = present(req, "table") orelse return hw.fatal("input.table is missing");
    // A table name cannot be a bound parameter: allow plain identifiers only.
    if (!isIdentifier(table)) return hw.fatalf(a, "input.table \"{s}\" is not a plain identifier", .{table});

    const repository = nonEmpty(req.payloadString("repository.full_name")) orelse "unknown";
    const pusher = nonEmpty(req.payloadString("pusher.name")) orelse "someone";
    const commits: usize = if (hw.path(req.event.payload, "commits")) |c| switch (c) {
        .array => |list| list.items.len,
        else => 0,
    } else 0;
    hw.info(a, "zig plugin: {s} pushed {d} commit(s) to {s} (event {s}, attempt {d})", .{
        pusher, commits, repository, req.event.id, req.ctx.attempt,
    });

    const text = try std.fmt.allocPrint(a, "{s} pushed {d} commit(s) to {s}", .{ pusher, commits, repository });
    const body = try std.json.Stringify.valueAlloc(a, .{
        .text = text,
        .repository = repository,
        .ref = req.payloadString("ref") orelse "",
        .after = req.payloadString("after") orelse "",
        .event_id = req.event.id,
    }, .{});
    const response = try hw.http(a, .{
        .method = "POST",
        .url = url,
        .headers = &.{.{ "content-type", "application/json" }},
        .body = body,
    });
    if (response.isRetryable()) {
        const after = if (response.header("retry-after")) |s|
            (std.fmt.parseInt(i64, std.mem.trim(u8, s, " "), 10) catch null)
        else
            null;
        const hint: ?i64 = if (after) |secs| (if (secs > 0) secs * 1000 else null) else null;
        return hw.retryablef(a, hint, "the receiver answered {d}", .{response.status});
    }
    if (response.status < 200 or response.status > 299) {
        const answer = response.body orelse "";
        const clipped = answer[0..@min(answer.len, clip_bytes)];
        const more: []const u8 = if (answer.len > clip_bytes) "..." else "";
        return hw.fatalf(a, "the receiver answered {d}: {s}{s}", .{ response.status, clipped, more });
    }
    hw.debug(a, "zig plugin: the receiver answered {d}", .{response.status});

    const sql = try std.fmt.allocPrint(a, "INSERT INTO {s} (event_id, repository, pusher, commits) VALUES (?, ?, ?, ?)", .{table});
    const inserted = try hw.db(a, connection, sql, .{ req.event.id, repository, pusher, commits });

    hw.ok(a, .{
        .posted = .{ .url = url, .status = response.status },
        .inserted = .{
            .connection = connection,
            .table = table,
            .rows_affected = inserted.rows_affected,
            .already_applied = inserted.already_applied,
        },
        .text = text,
    });
}

/// `input[key]` when it is a non-empty string.
fn present(req: hw.Request, key: []const u8) ?[]const u8 {
    return nonEmpty(req.inputString(key));
}

fn nonEmpty(s: ?[]const u8) ?[]const u8 {
    const v = s orelse return null;
    return if (v.len == 0) null else v;
}

/// `[A-Za-z_][A-Za-z0-9_]*`: safe to put into SQL text (values go through parameters).
fn isIdentifier(name: []const u8) bool {
    if (name.len == 0 or name.len > 63) return false;
    for (name, 0..) |c, i| {
        const ok = c == '_' or std.ascii.isAlphabetic(c) or (i > 0 and std.ascii.isDigit(c));
        if (!ok) return false;
    }
    return true;
}
