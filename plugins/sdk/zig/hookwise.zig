//! hookwise plugin SDK for Zig (0.17).
//!
//! A hookwise plugin written in Zig is a WASI command (`pub fn main`) built with
//!
//!     zig build-exe main.zig -target wasm32-wasi -O ReleaseSmall -femit-bin=plugin.wasm
//!
//! It talks to hookwise through the functions of the `hookwise` import module (the core
//! module ABI, see the plugins guide). This file wraps them:
//!
//!     const hw = @import("hookwise.zig");
//!
//!     pub fn main() void {
//!         var arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
//!         defer arena.deinit();
//!         const a = arena.allocator();
//!         const req = hw.Request.read(a) catch |e| return hw.fail(e);
//!         const name = req.inputString("name") orelse return hw.fatal("input lacks `name`");
//!         hw.info(a, "hello {s}, event {s}", .{ name, req.event.id });
//!         hw.ok(a, .{ .greeted = name });
//!     }
//!
//! * `Request.read` gives `ctx`, `event` (with the payload as a `std.json.Value`) and `input`.
//!   `inputString`, `payloadString` and `path` read values out of them.
//! * `trace` .. `err` log one line (formatted like `std.fmt`).
//! * `http` sends a request (needs `allow.http`), `db` runs one statement (needs `allow.db`);
//!   both return `error.Http` / `error.Db` when the host refuses or the call fails, and
//!   `lastError()` then holds the message; `fail(e)` answers for any such error.
//! * `ok` answers with any value `std.json` can write, `fatal` / `retryable` fail the call.
//!   The first answer given wins; return from `main` after it.
//!
//! Memory: every function takes an allocator for what it returns; an arena over
//! `std.heap.wasm_allocator` freed at the end of `main` is the simplest choice, since a plugin
//! runs once per call.

const std = @import("std");
pub const json = std.json;
const Allocator = std.mem.Allocator;

/// The raw imports. Strings are (pointer, length) pairs of UTF-8 in this module's memory.
pub const raw = struct {
    pub extern "hookwise" fn request_read(ptr: [*]u8, cap: i32) i32;
    pub extern "hookwise" fn output(ptr: [*]const u8, len: i32) void;
    pub extern "hookwise" fn @"error"(kind: i32, ptr: [*]const u8, len: i32, retry_after_ms: i64) void;
    pub extern "hookwise" fn log(level: i32, ptr: [*]const u8, len: i32) void;
    pub extern "hookwise" fn http_send(ptr: [*]const u8, len: i32) i32;
    pub extern "hookwise" fn db_execute(
        conn_ptr: [*]const u8,
        conn_len: i32,
        sql_ptr: [*]const u8,
        sql_len: i32,
        params_ptr: [*]const u8,
        params_len: i32,
    ) i32;
    pub extern "hookwise" fn result_read(ptr: [*]u8, cap: i32) i32;
};

pub const Error = error{ Http, Db, BadRequest, BadResult, OutOfMemory };

var last_error: []const u8 = "";

/// The message of the last `error.Http` / `error.Db` (or `error.BadRequest`/`BadResult`).
pub fn lastError() []const u8 {
    return last_error;
}

fn len32(bytes: []const u8) i32 {
    return @intCast(@min(bytes.len, std.math.maxInt(i32)));
}

// ---------- the request ----------

pub const Context = struct {
    rule_id: []const u8 = "",
    action_index: i64 = 0,
    attempt: i64 = 0,
    idempotency_key: []const u8 = "",
};

pub const Event = struct {
    id: []const u8 = "",
    source: []const u8 = "",
    event_type: []const u8 = "",
    received_at: []const u8 = "",
    /// `[["name", "value"], ...]` as the request carried them.
    headers: []const [2][]const u8 = &.{},
    payload: json.Value = .null,

    /// The first header named `name` (case-insensitive).
    pub fn header(self: Event, name: []const u8) ?[]const u8 {
        for (self.headers) |h| {
            if (std.ascii.eqlIgnoreCase(h[0], name)) return h[1];
        }
        return null;
    }
};

pub const Request = struct {
    ctx: Context = .{},
    event: Event = .{},
    /// The rule's rendered `with:` for this action.
    input: json.Value = .null,

    /// Reads and parses the call's request. Everything returned lives in `a`.
    pub fn read(a: Allocator) Error!Request {
        var probe: [1]u8 = undefined;
        const n = raw.request_read(&probe, 0);
        if (n < 0) return Error.BadRequest;
        const buf = try a.alloc(u8, @intCast(n));
        _ = raw.request_read(buf.ptr, n);
        return json.parseFromSliceLeaky(Request, a, buf, .{
            .ignore_unknown_fields = true,
            .allocate = .alloc_always,
        }) catch |e| switch (e) {
            error.OutOfMemory => Error.OutOfMemory,
            else => {
                last_error = "the request is not the JSON hookwise sends";
                return Error.BadRequest;
            },
        };
    }

    /// `input[key]` when it is a string.
    pub fn inputString(self: Request, key: []const u8) ?[]const u8 {
        return asString(path(self.input, key));
    }

    /// The payload value at a dotted path (`"pusher.name"`) when it is a string.
    pub fn payloadString(self: Request, dotted: []const u8) ?[]const u8 {
        return asString(path(self.event.payload, dotted));
    }

    /// The input parsed into `T` (unknown keys ignored); `error.BadRequest` when it does not fit.
    pub fn inputAs(self: Request, comptime T: type, a: Allocator) Error!T {
        return json.parseFromValueLeaky(T, a, self.input, .{ .ignore_unknown_fields = true }) catch |e| switch (e) {
            error.OutOfMemory => Error.OutOfMemory,
            else => {
                last_error = @errorName(e);
                return Error.BadRequest;
            },
        };
    }
};

/// The value at a dotted path of object keys (`"repository.full_name"`), or null.
pub fn path(root: json.Value, dotted: []const u8) ?json.Value {
    var at = root;
    var keys = std.mem.splitScalar(u8, dotted, '.');
    while (keys.next()) |key| {
        switch (at) {
            .object => |o| at = o.get(key) orelse return null,
            else => return null,
        }
    }
    return at;
}

/// The string inside `v`, or null.
pub fn asString(v: ?json.Value) ?[]const u8 {
    const value = v orelse return null;
    return switch (value) {
        .string => |s| s,
        else => null,
    };
}

/// The integer inside `v` (an integer, or a float with no fraction), or null.
pub fn asInt(v: ?json.Value) ?i64 {
    const value = v orelse return null;
    return switch (value) {
        .integer => |i| i,
        .float => |f| if (@floor(f) == f and @abs(f) < 9.0e15) @intFromFloat(f) else null,
        else => null,
    };
}

// ---------- logs ----------

pub const Level = enum(i32) { trace = 0, debug = 1, info = 2, warn = 3, @"error" = 4 };

/// One log line, formatted like `std.fmt.allocPrint`. A line that cannot be formatted (out of
/// memory) is logged as its format string.
pub fn logf(level: Level, a: Allocator, comptime fmt: []const u8, args: anytype) void {
    const line = std.fmt.allocPrint(a, fmt, args) catch fmt;
    raw.log(@intFromEnum(level), line.ptr, len32(line));
}

pub fn trace(a: Allocator, comptime fmt: []const u8, args: anytype) void {
    logf(.trace, a, fmt, args);
}
pub fn debug(a: Allocator, comptime fmt: []const u8, args: anytype) void {
    logf(.debug, a, fmt, args);
}
pub fn info(a: Allocator, comptime fmt: []const u8, args: anytype) void {
    logf(.info, a, fmt, args);
}
pub fn warn(a: Allocator, comptime fmt: []const u8, args: anytype) void {
    logf(.warn, a, fmt, args);
}
pub fn err(a: Allocator, comptime fmt: []const u8, args: anytype) void {
    logf(.@"error", a, fmt, args);
}

// ---------- results of http / db ----------

/// Reads the result of the last `http_send` / `db_execute` that returned `n`: the result
/// JSON when `n >= 0`, else (after setting `lastError()`) `failure`.
fn result(a: Allocator, n: i32, failure: Error) Error![]u8 {
    const len: usize = @intCast(@abs(n));
    const buf = try a.alloc(u8, len);
    _ = raw.result_read(buf.ptr, @intCast(len));
    if (n < 0) {
        last_error = buf;
        return failure;
    }
    return buf;
}

fn parseResult(comptime T: type, a: Allocator, text: []const u8) Error!T {
    return json.parseFromSliceLeaky(T, a, text, .{
        .ignore_unknown_fields = true,
        .allocate = .alloc_always,
    }) catch |e| switch (e) {
        error.OutOfMemory => Error.OutOfMemory,
        else => {
            last_error = "hookwise answered JSON this SDK does not understand";
            return Error.BadResult;
        },
    };
}

// ---------- HTTP ----------

pub const Header = [2][]const u8;

pub const HttpRequest = struct {
    method: []const u8 = "GET",
    url: []const u8,
    headers: []const Header = &.{},
    /// Text body (UTF-8). For bytes, base64-encode them into `body_base64` instead.
    body: ?[]const u8 = null,
    body_base64: ?[]const u8 = null,
};

pub const HttpResponse = struct {
    status: u16,
    headers: []const Header = &.{},
    /// The body when it is UTF-8 text, else null and `body_base64` holds it.
    body: ?[]const u8 = null,
    body_base64: ?[]const u8 = null,

    /// The first header named `name` (case-insensitive).
    pub fn header(self: HttpResponse, name: []const u8) ?[]const u8 {
        for (self.headers) |h| {
            if (std.ascii.eqlIgnoreCase(h[0], name)) return h[1];
        }
        return null;
    }

    /// 5xx and 429: worth trying again later.
    pub fn isRetryable(self: HttpResponse) bool {
        return self.status >= 500 or self.status == 429;
    }
};

/// Sends one HTTP request through the plugin's `allow.http` grant and reads the whole answer.
/// Any status is a response; `error.Http` (message in `lastError()`) means it was refused or
/// no answer came.
pub fn http(a: Allocator, request: HttpRequest) Error!HttpResponse {
    const text = try json.Stringify.valueAlloc(a, request, .{ .emit_null_optional_fields = false });
    const n = raw.http_send(text.ptr, len32(text));
    const answer = try result(a, n, Error.Http);
    return parseResult(HttpResponse, a, answer);
}

// ---------- database ----------

pub const DbResult = struct {
    /// Rows of a statement that returns rows, each a JSON object by column name.
    rows: []const json.Value = &.{},
    rows_affected: u64 = 0,
    /// More rows existed than the per-statement limit.
    truncated: bool = false,
    /// An earlier attempt with this idempotency key committed already; nothing ran.
    already_applied: bool = false,
};

/// Runs one statement on the granted connection `connection` (`allow.db`). `params` is any
/// value `std.json` writes as an array (a tuple `.{ "a", 1 }` or a slice), bound to `?` / `$1`
/// placeholders. Every statement of one call is one transaction, committed only when the
/// call succeeds. `error.Db` (message in `lastError()`) when the statement fails; the
/// transaction is then rolled back and the call fails (retryable, with the database's error)
/// whatever the plugin answers afterwards.
pub fn db(a: Allocator, connection: []const u8, sql: []const u8, params: anytype) Error!DbResult {
    const params_json = try json.Stringify.valueAlloc(a, params, .{});
    const n = raw.db_execute(
        connection.ptr,
        len32(connection),
        sql.ptr,
        len32(sql),
        params_json.ptr,
        len32(params_json),
    );
    const answer = try result(a, n, Error.Db);
    return parseResult(DbResult, a, answer);
}

// ---------- the answer ----------

/// The call succeeds with `value` written as JSON (a struct, tuple, slice, `json.Value`...).
pub fn ok(a: Allocator, value: anytype) void {
    const text = json.Stringify.valueAlloc(a, value, .{}) catch
        return fatal("out of memory writing the output");
    raw.output(text.ptr, len32(text));
}

/// The call fails for good: no retry, the execution is dead-lettered.
pub fn fatal(message: []const u8) void {
    raw.@"error"(1, message.ptr, len32(message), -1);
}

/// The call fails and is tried again later, after `retry_after_ms` when given (the rule's
/// back-off otherwise).
pub fn retryable(message: []const u8, retry_after_ms: ?i64) void {
    raw.@"error"(0, message.ptr, len32(message), retry_after_ms orelse -1);
}

/// Answers for an error this SDK returned: `error.Http` and `error.Db` become retryable errors
/// (the request got no answer or the statement failed: another attempt may succeed), the rest
/// fatal ones, each with `lastError()` as the message. Typical use:
/// `handle(a) catch |e| hw.fail(e);` in `main`.
pub fn fail(e: Error) void {
    switch (e) {
        Error.Http, Error.Db => retryable(lastError(), null),
        Error.OutOfMemory => fatal("out of memory"),
        Error.BadRequest, Error.BadResult => fatal(if (last_error.len > 0) last_error else @errorName(e)),
    }
}

/// `fatal` with a formatted message.
pub fn fatalf(a: Allocator, comptime fmt: []const u8, args: anytype) void {
    fatal(std.fmt.allocPrint(a, fmt, args) catch fmt);
}

/// `retryable` with a formatted message.
pub fn retryablef(a: Allocator, retry_after_ms: ?i64, comptime fmt: []const u8, args: anytype) void {
    retryable(std.fmt.allocPrint(a, fmt, args) catch fmt, retry_after_ms);
}
