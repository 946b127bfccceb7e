/*
 * hookwise.h: the C SDK for hookwise plugins.
 *
 * A C plugin is a WASI command module (a `main`) built with a wasm32-wasi C compiler, e.g.
 *
 *     python -m ziglang cc --target=wasm32-wasi -O2 plugin.c hookwise.c -o plugin.wasm
 *
 * It talks to hookwise through the `hookwise` import module: it reads its request, logs,
 * sends HTTP requests through the plugin's `allow.http` grant, runs SQL on its `allow.db`
 * connections, and answers with an output or an error:
 *
 *     int main(void) {
 *         hw_request req;
 *         if (hw_request_read(&req) != 0) return 1;      // answered already
 *         char *url = hw_json_get_string(req.input, "url");
 *         if (!url) return hw_fatal("input.url is missing");
 *         hw_info("event %s", req.event_id);
 *         return hw_output("{\"ok\":true}");
 *     }
 *
 * Strings handed to hookwise are UTF-8. Every function that allocates says so; free with
 * free() (or the matching hw_*_free).
 *
 * JSON: this SDK has no full JSON parser. It can find the value of a key in an object
 * (hw_json_find, a raw span of the text), decode a string or integer value, and write
 * escaped JSON strings into a growable buffer (hw_buf). That covers reading the request and
 * HTTP/database results and building JSON to send. Limits, on purpose:
 *   - lookups look at ONE object's own keys (nest calls to go deeper: find "input", then
 *     "url" in it); the first of duplicate keys wins; keys are compared after decoding
 *     their escapes, so "\u0075rl" matches "url";
 *   - the text is checked only as far as it is walked: a value after the one found is not
 *     validated; malformed text (unterminated strings, bad escapes, unbalanced brackets,
 *     nesting deeper than HW_JSON_MAX_DEPTH) makes a lookup return HW_JSON_MALFORMED and
 *     never reads past the given length;
 *   - numbers are returned as raw text; hw_json_get_int decodes integers that fit in
 *     a long long (no fractions or exponents);
 *   - decoded strings may contain NUL bytes ("\u0000"); the returned length tells.
 */
#ifndef HOOKWISE_H
#define HOOKWISE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the `hookwise` import module ------------------------------------------------------ */

#define HW_IMPORT(name) __attribute__((import_module("hookwise"), import_name(name)))

HW_IMPORT("request_read") int32_t hw_import_request_read(void *ptr, int32_t cap);
HW_IMPORT("result_read") int32_t hw_import_result_read(void *ptr, int32_t cap);
HW_IMPORT("output") void hw_import_output(const void *ptr, int32_t len);
HW_IMPORT("error") void hw_import_error(int32_t kind, const void *ptr, int32_t len, int64_t retry_after_ms);
HW_IMPORT("log") void hw_import_log(int32_t level, const void *ptr, int32_t len);
HW_IMPORT("http_send") int32_t hw_import_http_send(const void *ptr, int32_t len);
HW_IMPORT("db_execute") int32_t hw_import_db_execute(const void *conn, int32_t conn_len, const void *sql,
                                                     int32_t sql_len, const void *params, int32_t params_len);

/* ---- spans of JSON text ---------------------------------------------------------------- */

/* A piece of text (not NUL-terminated): a raw JSON value inside a larger text. */
typedef struct {
    const char *ptr;
    size_t len;
} hw_str;

#define HW_JSON_FOUND 1
#define HW_JSON_MISSING 0
#define HW_JSON_MALFORMED (-1)
#define HW_JSON_MAX_DEPTH 128

/* hw_str over a NUL-terminated text. */
hw_str hw_str_of(const char *text);

/* Finds `key` in the JSON object `object` (leading/trailing whitespace allowed) and sets
 * *value to its raw value text (a string value keeps its quotes). Returns HW_JSON_FOUND,
 * HW_JSON_MISSING (also when `object` is not an object) or HW_JSON_MALFORMED. */
int hw_json_find(hw_str object, const char *key, hw_str *value);

/* Decodes the JSON string `value` (with its quotes) into a new NUL-terminated buffer;
 * *len (if not NULL) gets its length. NULL when `value` is not a valid JSON string or
 * memory runs out. Escapes \uXXXX (with surrogate pairs) become UTF-8. */
char *hw_json_decode_string(hw_str value, size_t *len);

/* The decoded string value of `key` in `object`, or NULL when missing, not a string or
 * malformed. Free it. */
char *hw_json_get_string(hw_str object, const char *key);

/* The number of items of the JSON array `array`, or -1 when it is not an array or is
 * malformed. */
long hw_json_array_len(hw_str array);

/* Sets *item to the raw text of item `index` (from 0) of the JSON array `array`. Returns
 * HW_JSON_FOUND, HW_JSON_MISSING (past the end, or not an array) or HW_JSON_MALFORMED. */
int hw_json_index(hw_str array, size_t index, hw_str *item);

/* The integer value of `key` in `object`: 1 and *out set when it is an integer that fits
 * a long long, 0 otherwise. */
int hw_json_get_int(hw_str object, const char *key, long long *out);

/* ---- building text --------------------------------------------------------------------- */

/* A growable NUL-terminated buffer. Zero-initialise it (hw_buf b = {0};). When memory runs
 * out, `failed` is set and further appends do nothing. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} hw_buf;

void hw_buf_append(hw_buf *b, const char *data, size_t len);
void hw_buf_puts(hw_buf *b, const char *text);
void hw_buf_printf(hw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `text` (len bytes) as a quoted, escaped JSON string. Bytes that are not valid
 * UTF-8 become U+FFFD so that the result is always valid JSON. */
void hw_buf_json_string(hw_buf *b, const char *text, size_t len);
/* Same for a NUL-terminated text; NULL appends `null`. */
void hw_buf_json_cstr(hw_buf *b, const char *text);
void hw_buf_free(hw_buf *b);

/* ---- the request ----------------------------------------------------------------------- */

typedef struct {
    char *json;            /* the whole request text (owned) */
    size_t len;
    hw_str ctx, event, input, payload; /* raw JSON values (empty spans when missing) */
    char *rule_id;         /* ctx.rule_id */
    char *idempotency_key; /* ctx.idempotency_key */
    long long attempt;     /* ctx.attempt, from 1 */
    long long action_index;
    char *event_id;        /* event.id */
    char *event_type;      /* event.event_type */
    char *source;          /* event.source */
} hw_request;

/* Reads this call's request. Returns 0, or -1 after answering with a fatal error (no
 * request, out of memory, not the JSON expected). */
int hw_request_read(hw_request *req);
/* The first event header called `name` (case-insensitive), decoded; NULL when absent. */
char *hw_request_header(const hw_request *req, const char *name);
void hw_request_free(hw_request *req);

/* ---- logging --------------------------------------------------------------------------- */

enum { HW_TRACE = 0, HW_DEBUG = 1, HW_INFO = 2, HW_WARN = 3, HW_ERROR = 4 };

/* One log line of this call (shown by `hookwise logs EVENT_ID`), printf-style. */
void hw_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hw_vlog(int level, const char *fmt, va_list ap);
#define hw_trace(...) hw_log(HW_TRACE, __VA_ARGS__)
#define hw_debug(...) hw_log(HW_DEBUG, __VA_ARGS__)
#define hw_info(...) hw_log(HW_INFO, __VA_ARGS__)
#define hw_warn(...) hw_log(HW_WARN, __VA_ARGS__)
#define hw_error(...) hw_log(HW_ERROR, __VA_ARGS__)

/* ---- answering ------------------------------------------------------------------------- */

/* The call succeeds with `json` (a JSON text) as its output. Returns 0, for `return
 * hw_output(...)` from main. */
int hw_output(const char *json);
/* The call fails for good (the execution is dead-lettered). Returns 1. */
int hw_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The call fails and may be retried by the rule's retry policy; retry_after_ms >= 0 asks
 * hookwise to wait at least that long (-1: no hint). Returns 1. */
int hw_retryable(long long retry_after_ms, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- HTTP ------------------------------------------------------------------------------ */

typedef struct {
    const char *method;         /* NULL: GET */
    const char *url;            /* must be granted by `allow.http` */
    const char *const *headers; /* name, value, name, value, ..., NULL (or NULL for none) */
    const char *body;           /* text (UTF-8); NULL for none */
    size_t body_len;
} hw_http_request;

typedef struct {
    int status;
    char *json;   /* the whole result text (owned) */
    size_t len;
    char *body;   /* decoded body text, NUL-terminated (owned; "" when none or binary) */
    size_t body_len;
    hw_str headers; /* raw [[name, value], ...] */
} hw_http_response;

/* Sends `req`. Returns 0 and fills *resp (whatever the status), or -1 and *error (owned,
 * may be NULL when memory ran out) holds the host's reason: not granted, restricted
 * address, connection failed, limit reached. */
int hw_http_send(const hw_http_request *req, hw_http_response *resp, char **error);
/* The first response header called `name` (case-insensitive), decoded; NULL when absent. */
char *hw_http_header(const hw_http_response *resp, const char *name);
void hw_http_response_free(hw_http_response *resp);

/* ---- database -------------------------------------------------------------------------- */

/* Runs one statement on a granted connection. `params_json` is a JSON array bound to the
 * placeholders (`?` on SQLite and MySQL, `$1` on PostgreSQL); NULL for none. Returns 0 and
 * *result (owned) holds {"rows": [...]} / {"rows_affected": n} / {"already_applied": true},
 * or -1 and *result holds the error message (NULL when memory ran out). All statements of a
 * call are one transaction, committed only when the call succeeds. */
int hw_db_execute(const char *connection, const char *sql, const char *params_json, char **result);

#ifdef __cplusplus
}
#endif

#endif
