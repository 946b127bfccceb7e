/*
 * hookwise.c: the C SDK for hookwise plugins (see hookwise.h for the API and its limits).
 * Only the C standard library (wasi-libc) is used.
 */
#include "hookwise.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- JSON walking ---------------------------------------------------------------------- */

typedef struct {
    const char *p;
    const char *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int is_hex(char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* At a '"': moves past the closing quote. -1 when unterminated or malformed. */
static int skip_string(cursor *c) {
    if (c->p >= c->end || *c->p != '"')
        return -1;
    c->p++;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '"')
            return 0;
        if (ch < 0x20)
            return -1;
        if (ch == '\\') {
            if (c->p >= c->end)
                return -1;
            ch = (unsigned char)*c->p++;
            switch (ch) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                break;
            case 'u':
                for (int i = 0; i < 4; i++) {
                    if (c->p >= c->end || !is_hex(*c->p))
                        return -1;
                    c->p++;
                }
                break;
            default:
                return -1;
            }
        }
    }
    return -1;
}

/* A number or true/false/null. */
static int skip_scalar(cursor *c) {
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(c->end - c->p) >= n && memcmp(c->p, words[i], n) == 0) {
            c->p += n;
            return 0;
        }
    }
    const char *start = c->p;
    if (c->p < c->end && *c->p == '-')
        c->p++;
    const char *digits = c->p;
    while (c->p < c->end && ((*c->p >= '0' && *c->p <= '9') || *c->p == '.' || *c->p == 'e' ||
                             *c->p == 'E' || *c->p == '+' || *c->p == '-'))
        c->p++;
    if (c->p == digits || !(*digits >= '0' && *digits <= '9'))
        return -1;
    (void)start;
    return 0;
}

/* At an object key: skips `"key" :` and the whitespace after. */
static int skip_key(cursor *c) {
    skip_ws(c);
    if (skip_string(c) != 0)
        return -1;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':')
        return -1;
    c->p++;
    return 0;
}

/* Skips one whole value (after leading whitespace), without recursion. */
static int skip_value(cursor *c) {
    char stack[HW_JSON_MAX_DEPTH];
    int depth = 0;
    for (;;) {
        skip_ws(c);
        if (c->p >= c->end)
            return -1;
        char ch = *c->p;
        if (ch == '{' || ch == '[') {
            if (depth >= HW_JSON_MAX_DEPTH)
                return -1;
            stack[depth++] = ch;
            c->p++;
            skip_ws(c);
            if (c->p < c->end && *c->p == (ch == '{' ? '}' : ']')) {
                c->p++;
                depth--;
            } else {
                if (ch == '{' && skip_key(c) != 0)
                    return -1;
                continue; /* the first member's value */
            }
        } else if (ch == '"') {
            if (skip_string(c) != 0)
                return -1;
        } else if (skip_scalar(c) != 0) {
            return -1;
        }
        /* After a value: close containers or go on to the next member. */
        for (;;) {
            if (depth == 0)
                return 0;
            skip_ws(c);
            if (c->p >= c->end)
                return -1;
            char open = stack[depth - 1];
            if (*c->p == ',') {
                c->p++;
                if (open == '{' && skip_key(c) != 0)
                    return -1;
                break;
            }
            if (*c->p == (open == '{' ? '}' : ']')) {
                c->p++;
                depth--;
                continue;
            }
            return -1;
        }
    }
}

hw_str hw_str_of(const char *text) {
    hw_str s = {text, text ? strlen(text) : 0};
    return s;
}

static void put_utf8(char **out, unsigned long cp) {
    char *o = *out;
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    *out = o;
}

static unsigned long hex4(const char *p) {
    unsigned long v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        v = v * 16 + (unsigned long)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
    }
    return v;
}

char *hw_json_decode_string(hw_str value, size_t *len) {
    cursor c = {value.ptr, value.ptr + value.len};
    skip_ws(&c);
    const char *start = c.p;
    if (!value.ptr || skip_string(&c) != 0)
        return NULL;
    skip_ws(&c);
    if (c.p != c.end)
        return NULL; /* more than one string */
    /* Every escape decodes to no more bytes than it takes: the text's length suffices. */
    char *out = malloc(value.len + 1);
    if (!out)
        return NULL;
    char *o = out;
    const char *p = start + 1;
    for (;;) {
        char ch = *p++;
        if (ch == '"')
            break;
        if (ch != '\\') {
            *o++ = ch;
            continue;
        }
        ch = *p++;
        switch (ch) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned long cp = hex4(p);
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                /* A high surrogate: a pair when a low one follows, else U+FFFD. The
                 * string was validated, so the 6 bytes are in bounds when they start
                 * with a backslash and a 'u'. */
                if (p[0] == '\\' && p[1] == 'u') {
                    unsigned long lo = hex4(p + 2);
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        p += 6;
                    } else {
                        cp = 0xFFFD;
                    }
                } else {
                    cp = 0xFFFD;
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
            put_utf8(&o, cp);
            break;
        }
        default: *o++ = ch; break; /* " \ / */
        }
    }
    *o = '\0';
    if (len)
        *len = (size_t)(o - out);
    return out;
}

/* Whether the raw JSON string `raw` (with quotes) decodes to exactly `key`; ci: ASCII
 * case-insensitive. */
static int key_equals(hw_str raw, const char *key, int ci) {
    size_t klen = strlen(key);
    if (!memchr(raw.ptr, '\\', raw.len)) {
        if (raw.len != klen + 2)
            return 0;
        if (!ci)
            return memcmp(raw.ptr + 1, key, klen) == 0;
        for (size_t i = 0; i < klen; i++) {
            char a = raw.ptr[1 + i], b = key[i];
            if (a >= 'A' && a <= 'Z') a = (char)(a | 0x20);
            if (b >= 'A' && b <= 'Z') b = (char)(b | 0x20);
            if (a != b)
                return 0;
        }
        return 1;
    }
    size_t n = 0;
    char *decoded = hw_json_decode_string(raw, &n);
    int eq = decoded && n == klen;
    if (eq) {
        for (size_t i = 0; i < n && eq; i++) {
            char a = decoded[i], b = key[i];
            if (ci && a >= 'A' && a <= 'Z') a = (char)(a | 0x20);
            if (ci && b >= 'A' && b <= 'Z') b = (char)(b | 0x20);
            eq = a == b;
        }
    }
    free(decoded);
    return eq;
}

int hw_json_find(hw_str object, const char *key, hw_str *value) {
    if (!object.ptr || !key)
        return HW_JSON_MISSING;
    cursor c = {object.ptr, object.ptr + object.len};
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return HW_JSON_MISSING;
    c.p++;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}')
        return HW_JSON_MISSING;
    for (;;) {
        skip_ws(&c);
        const char *kstart = c.p;
        if (skip_string(&c) != 0)
            return HW_JSON_MALFORMED;
        hw_str k = {kstart, (size_t)(c.p - kstart)};
        skip_ws(&c);
        if (c.p >= c.end || *c.p != ':')
            return HW_JSON_MALFORMED;
        c.p++;
        skip_ws(&c);
        const char *vstart = c.p;
        if (skip_value(&c) != 0)
            return HW_JSON_MALFORMED;
        if (key_equals(k, key, 0)) {
            if (value) {
                value->ptr = vstart;
                value->len = (size_t)(c.p - vstart);
            }
            return HW_JSON_FOUND;
        }
        skip_ws(&c);
        if (c.p >= c.end)
            return HW_JSON_MALFORMED;
        if (*c.p == '}')
            return HW_JSON_MISSING;
        if (*c.p != ',')
            return HW_JSON_MALFORMED;
        c.p++;
    }
}

int hw_json_index(hw_str array, size_t index, hw_str *item) {
    if (!array.ptr)
        return HW_JSON_MISSING;
    cursor c = {array.ptr, array.ptr + array.len};
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '[')
        return HW_JSON_MISSING;
    c.p++;
    skip_ws(&c);
    if (c.p < c.end && *c.p == ']')
        return HW_JSON_MISSING;
    for (size_t i = 0;; i++) {
        skip_ws(&c);
        const char *start = c.p;
        if (skip_value(&c) != 0)
            return HW_JSON_MALFORMED;
        if (i == index) {
            if (item) {
                item->ptr = start;
                item->len = (size_t)(c.p - start);
            }
            return HW_JSON_FOUND;
        }
        skip_ws(&c);
        if (c.p >= c.end)
            return HW_JSON_MALFORMED;
        if (*c.p == ']')
            return HW_JSON_MISSING;
        if (*c.p != ',')
            return HW_JSON_MALFORMED;
        c.p++;
    }
}

long hw_json_array_len(hw_str array) {
    if (!array.ptr)
        return -1;
    cursor c = {array.ptr, array.ptr + array.len};
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '[')
        return -1;
    cursor whole = c;
    if (skip_value(&whole) != 0)
        return -1;
    c.p++;
    skip_ws(&c);
    if (*c.p == ']')
        return 0;
    long n = 0;
    for (;;) {
        if (skip_value(&c) != 0)
            return -1;
        n++;
        skip_ws(&c);
        if (*c.p == ']')
            return n;
        c.p++; /* ',' (the whole array was validated above) */
    }
}

char *hw_json_get_string(hw_str object, const char *key) {
    hw_str v;
    if (hw_json_find(object, key, &v) != HW_JSON_FOUND)
        return NULL;
    return hw_json_decode_string(v, NULL);
}

int hw_json_get_int(hw_str object, const char *key, long long *out) {
    hw_str v;
    if (hw_json_find(object, key, &v) != HW_JSON_FOUND || v.len == 0)
        return 0;
    size_t i = 0;
    int neg = 0;
    if (v.ptr[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i >= v.len)
        return 0;
    unsigned long long acc = 0, limit = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    for (; i < v.len; i++) {
        char ch = v.ptr[i];
        if (ch < '0' || ch > '9')
            return 0;
        unsigned d = (unsigned)(ch - '0');
        if (acc > (limit - d) / 10)
            return 0;
        acc = acc * 10 + d;
    }
    if (out)
        *out = neg ? (long long)(0 - acc) : (long long)acc;
    return 1;
}

/* ---- buffers --------------------------------------------------------------------------- */

static int buf_reserve(hw_buf *b, size_t more) {
    if (b->failed)
        return 0;
    if (more > SIZE_MAX - b->len - 1) {
        b->failed = 1;
        return 0;
    }
    size_t need = b->len + more + 1;
    if (need <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *data = realloc(b->data, cap);
    if (!data) {
        b->failed = 1;
        return 0;
    }
    b->data = data;
    b->cap = cap;
    return 1;
}

void hw_buf_append(hw_buf *b, const char *data, size_t len) {
    if (!buf_reserve(b, len))
        return;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void hw_buf_puts(hw_buf *b, const char *text) { hw_buf_append(b, text, strlen(text)); }

static void buf_vprintf(hw_buf *b, const char *fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0 || !buf_reserve(b, (size_t)n))
        return;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void hw_buf_printf(hw_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when it is not valid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned long cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

void hw_buf_json_string(hw_buf *b, const char *text, size_t len) {
    const unsigned char *s = (const unsigned char *)text;
    hw_buf_append(b, "\"", 1);
    size_t i = 0;
    while (i < len) {
        unsigned char ch = s[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            hw_buf_append(b, esc, 2);
            i++;
        } else if (ch < 0x20) {
            switch (ch) {
            case '\n': hw_buf_append(b, "\\n", 2); break;
            case '\r': hw_buf_append(b, "\\r", 2); break;
            case '\t': hw_buf_append(b, "\\t", 2); break;
            default: hw_buf_printf(b, "\\u%04x", ch); break;
            }
            i++;
        } else {
            size_t n = utf8_len(s + i, len - i);
            if (n == 0) {
                hw_buf_append(b, "\\ufffd", 6);
                i++;
            } else {
                hw_buf_append(b, text + i, n);
                i += n;
            }
        }
    }
    hw_buf_append(b, "\"", 1);
}

void hw_buf_json_cstr(hw_buf *b, const char *text) {
    if (!text)
        hw_buf_puts(b, "null");
    else
        hw_buf_json_string(b, text, strlen(text));
}

void hw_buf_free(hw_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

/* ---- answering and logging ------------------------------------------------------------- */

int hw_output(const char *json) {
    size_t n = json ? strlen(json) : 0;
    if (n == 0) {
        json = "null";
        n = 4;
    }
    hw_import_output(json, (int32_t)(n > INT32_MAX ? INT32_MAX : n));
    return 0;
}

static void fail(int32_t kind, long long retry_after_ms, const char *fmt, va_list ap) {
    hw_buf b = {0};
    buf_vprintf(&b, fmt, ap);
    const char *msg = b.failed || b.len == 0 ? "the plugin failed" : b.data;
    size_t n = strlen(msg);
    hw_import_error(kind, msg, (int32_t)(n > INT32_MAX ? INT32_MAX : n),
                    retry_after_ms < 0 ? -1 : (int64_t)retry_after_ms);
    hw_buf_free(&b);
}

int hw_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fail(1, -1, fmt, ap);
    va_end(ap);
    return 1;
}

int hw_retryable(long long retry_after_ms, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fail(0, retry_after_ms, fmt, ap);
    va_end(ap);
    return 1;
}

void hw_vlog(int level, const char *fmt, va_list ap) {
    hw_buf b = {0};
    buf_vprintf(&b, fmt, ap);
    if (!b.failed && b.data)
        hw_import_log(level, b.data, (int32_t)(b.len > INT32_MAX ? INT32_MAX : b.len));
    hw_buf_free(&b);
}

void hw_log(int level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    hw_vlog(level, fmt, ap);
    va_end(ap);
}

/* ---- the request ----------------------------------------------------------------------- */

static hw_str member(hw_str object, const char *key) {
    hw_str v = {NULL, 0};
    if (hw_json_find(object, key, &v) != HW_JSON_FOUND) {
        v.ptr = NULL;
        v.len = 0;
    }
    return v;
}

int hw_request_read(hw_request *req) {
    memset(req, 0, sizeof *req);
    int32_t n = hw_import_request_read(NULL, 0);
    if (n <= 0)
        return hw_fatal("the host gave no request"), -1;
    req->json = malloc((size_t)n + 1);
    if (!req->json)
        return hw_fatal("out of memory reading a request of %d bytes", (int)n), -1;
    int32_t got = hw_import_request_read(req->json, n);
    if (got != n) {
        hw_request_free(req);
        return hw_fatal("the request changed size while read"), -1;
    }
    req->json[n] = '\0';
    req->len = (size_t)n;
    hw_str all = {req->json, req->len};
    req->ctx = member(all, "ctx");
    req->event = member(all, "event");
    req->input = member(all, "input");
    req->payload = member(req->event, "payload");
    if (!req->ctx.ptr || !req->event.ptr) {
        hw_request_free(req);
        return hw_fatal("the request lacks ctx or event"), -1;
    }
    req->rule_id = hw_json_get_string(req->ctx, "rule_id");
    req->idempotency_key = hw_json_get_string(req->ctx, "idempotency_key");
    hw_json_get_int(req->ctx, "attempt", &req->attempt);
    hw_json_get_int(req->ctx, "action_index", &req->action_index);
    req->event_id = hw_json_get_string(req->event, "id");
    req->event_type = hw_json_get_string(req->event, "event_type");
    req->source = hw_json_get_string(req->event, "source");
    if (!req->rule_id || !req->idempotency_key || !req->event_id || !req->event_type || !req->source) {
        hw_request_free(req);
        return hw_fatal("the request is not what this SDK expects (or memory ran out)"), -1;
    }
    return 0;
}

/* The decoded value of the first [name, value] pair in `pairs` whose name is `name`. */
static char *pair_value(hw_str pairs, const char *name) {
    hw_str pair, k, v;
    for (size_t i = 0; hw_json_index(pairs, i, &pair) == HW_JSON_FOUND; i++) {
        if (hw_json_index(pair, 0, &k) == HW_JSON_FOUND && hw_json_index(pair, 1, &v) == HW_JSON_FOUND) {
            cursor c = {k.ptr, k.ptr + k.len};
            if (k.len >= 2 && k.ptr[0] == '"' && skip_string(&c) == 0 && key_equals(k, name, 1))
                return hw_json_decode_string(v, NULL);
        }
    }
    return NULL;
}

char *hw_request_header(const hw_request *req, const char *name) {
    return pair_value(member(req->event, "headers"), name);
}

void hw_request_free(hw_request *req) {
    free(req->json);
    free(req->rule_id);
    free(req->idempotency_key);
    free(req->event_id);
    free(req->event_type);
    free(req->source);
    memset(req, 0, sizeof *req);
}

/* ---- HTTP and database ----------------------------------------------------------------- */

/* Reads the result of the last http_send/db_execute that returned n; *ok: n >= 0. */
static char *take_result(int32_t n, size_t *len) {
    size_t size = n < 0 ? (size_t)(-(int64_t)n) : (size_t)n;
    char *text = malloc(size + 1);
    if (!text)
        return NULL;
    if (size > 0)
        hw_import_result_read(text, (int32_t)size);
    text[size] = '\0';
    if (len)
        *len = size;
    return text;
}

int hw_http_send(const hw_http_request *req, hw_http_response *resp, char **error) {
    memset(resp, 0, sizeof *resp);
    if (error)
        *error = NULL;
    hw_buf b = {0};
    hw_buf_puts(&b, "{\"method\":");
    hw_buf_json_cstr(&b, req->method ? req->method : "GET");
    hw_buf_puts(&b, ",\"url\":");
    hw_buf_json_cstr(&b, req->url ? req->url : "");
    hw_buf_puts(&b, ",\"headers\":[");
    for (size_t i = 0; req->headers && req->headers[i] && req->headers[i + 1]; i += 2) {
        hw_buf_puts(&b, i ? ",[" : "[");
        hw_buf_json_cstr(&b, req->headers[i]);
        hw_buf_puts(&b, ",");
        hw_buf_json_cstr(&b, req->headers[i + 1]);
        hw_buf_puts(&b, "]");
    }
    hw_buf_puts(&b, "]");
    if (req->body) {
        hw_buf_puts(&b, ",\"body\":");
        hw_buf_json_string(&b, req->body, req->body_len);
    }
    hw_buf_puts(&b, "}");
    if (b.failed) {
        hw_buf_free(&b);
        if (error)
            *error = strdup("out of memory building the request");
        return -1;
    }
    int32_t n = hw_import_http_send(b.data, (int32_t)(b.len > INT32_MAX ? INT32_MAX : b.len));
    hw_buf_free(&b);
    size_t len = 0;
    char *text = take_result(n, &len);
    if (n < 0 || !text) {
        if (error)
            *error = text;
        else
            free(text);
        return -1;
    }
    resp->json = text;
    resp->len = len;
    hw_str all = {text, len};
    long long status = 0;
    hw_json_get_int(all, "status", &status);
    resp->status = (int)status;
    resp->headers = member(all, "headers");
    hw_str body;
    if (hw_json_find(all, "body", &body) == HW_JSON_FOUND)
        resp->body = hw_json_decode_string(body, &resp->body_len);
    if (!resp->body) {
        resp->body = calloc(1, 1);
        resp->body_len = 0;
    }
    return 0;
}

char *hw_http_header(const hw_http_response *resp, const char *name) {
    return pair_value(resp->headers, name);
}

void hw_http_response_free(hw_http_response *resp) {
    free(resp->json);
    free(resp->body);
    memset(resp, 0, sizeof *resp);
}

int hw_db_execute(const char *connection, const char *sql, const char *params_json, char **result) {
    if (!params_json)
        params_json = "[]";
    size_t cl = strlen(connection), sl = strlen(sql), pl = strlen(params_json);
    int32_t n = hw_import_db_execute(connection, (int32_t)cl, sql, (int32_t)sl, params_json, (int32_t)pl);
    char *text = take_result(n, NULL);
    *result = text;
    return n < 0 || !text ? -1 : 0;
}
