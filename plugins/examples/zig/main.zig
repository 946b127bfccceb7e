//! Example hookwise plugin in Zig, using all three capabilities:
//!
//! * logs what it is doing,
//! * POSTs a small JSON summary of the event to `input.url` (needs `allow.http`),
//! * inserts one row into `input.table` on the connection `input.connection` (needs
//!   `allow.db`): columns `event_id`, `event_type`, `ref`, `status`,
//! * answers `{"event", "posted", "status", "table", "rows_affected"}`.
//!
//! A 5xx or 429 answer is a retryable error (with the receiver's `Retry-After` seconds as the
//! hint); an input without `url`, `connection` or `table`, or a table name that is not a plain
//! identifier, is a fatal one.
//!
//! Build: `plugins/examples/zig/build.sh OUT_DIR` (writes OUT_DIR/zig.wasm).

const std = @import("std");
const hw = @import("hookwise");

pub fn main() void {
    var arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
    defer arena.deinit();
    run(arena.allocator()) catch |e| hw.fail(e);
}

fn run(a: std.mem.Allocator) hw.Error!void {
    const req = try hw.Request.read(a);

    const url = req.inputString("url") orelse return hw.fatal("input lacks `url`");
    const connection = req.inputString("connection") orelse return hw.fatal("input lacks `connection`");
    const table = req.inputString("table") orelse return hw.fatal("input lacks `table`");
    if (!isIdentifier(table)) return hw.fatalf(a, "`table` must be a plain SQL identifier, not `{s}`", .{table});

    const ref = req.payloadString("ref");
    hw.info(a, "zig plugin: event {s} ({s} from {s}), attempt {d}", .{
        req.event.id, req.event.event_type, req.event.source, req.ctx.attempt,
    });

    // HTTP: a JSON summary of the event.
    const body = try std.json.Stringify.valueAlloc(a, .{
        .event = req.event.id,
        .event_type = req.event.event_type,
        .ref = ref,
        .from = "zig",
    }, .{});
    const response = try hw.http(a, .{
        .method = "POST",
        .url = url,
        .headers = &.{.{ "content-type", "application/json" }},
        .body = body,
    });
    hw.debug(a, "POST {s} -> {d}", .{ url, response.status });
    if (response.isRetryable()) {
        const after = if (response.header("retry-after")) |s|
            (std.fmt.parseInt(i64, std.mem.trim(u8, s, " "), 10) catch null)
        else
            null;
        return hw.retryablef(a, if (after) |secs| secs * 1000 else null, "{s} answered {d}", .{ url, response.status });
    }
    if (response.status >= 400) {
        hw.warn(a, "{s} answered {d}; recording it anyway", .{ url, response.status });
    }

    // Database: one row per event (the call's transaction commits when it succeeds).
    const sql = try std.fmt.allocPrint(a, "INSERT INTO {s} (event_id, event_type, ref, status) VALUES (?, ?, ?, ?)", .{table});
    const inserted = try hw.db(a, connection, sql, .{ req.event.id, req.event.event_type, ref, response.status });
    hw.info(a, "inserted {d} row(s) into {s}", .{ inserted.rows_affected, table });

    hw.ok(a, .{
        .event = req.event.id,
        .posted = url,
        .status = response.status,
        .table = table,
        .rows_affected = inserted.rows_affected,
    });
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
