/*
 * The C example plugin: for a GitHub push it logs, POSTs a summary to `input.url` (through
 * the plugin's `allow.http` grant), records the push as a row of `input.table` on
 * `input.connection` (`allow.db`), and answers what it did.
 *
 *   input: {"url": "https://...", "connection": "app", "table": "pushes"}
 *
 * The table needs the columns (event_id, repository, pusher, commits); `?` placeholders
 * (SQLite, MySQL). A missing input key is a fatal error; an HTTP answer of 429 or 5xx is a
 * retryable one (honouring a Retry-After of seconds); any other non-2xx answer is fatal.
 */
#include <stdlib.h>
#include <string.h>

#include "hookwise.h"

/* A table name cannot be a bound parameter: allow plain identifiers only. */
static int identifier(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

/* A nested string value: payload.a.b; NULL when missing. */
static char *nested(hw_str object, const char *outer, const char *inner) {
    hw_str v;
    if (hw_json_find(object, outer, &v) != HW_JSON_FOUND)
        return NULL;
    return hw_json_get_string(v, inner);
}

static int run(hw_request *req) {
    static const char *const keys[] = {"url", "connection", "table"};
    char *in[3] = {0};
    for (int i = 0; i < 3; i++) {
        in[i] = hw_json_get_string(req->input, keys[i]);
        if (!in[i] || !*in[i]) {
            for (int j = 0; j <= i; j++)
                free(in[j]);
            return hw_fatal("input.%s is missing", keys[i]);
        }
    }
    const char *url = in[0], *connection = in[1], *table = in[2];
    int rc = 1;
    char *repository = NULL, *pusher = NULL, *ref = NULL, *after = NULL, *retry_after = NULL;
    char *db_result = NULL;
    hw_buf body = {0}, sql = {0}, params = {0}, out = {0};
    hw_http_response resp = {0};
    int have_resp = 0;

    if (!identifier(table)) {
        rc = hw_fatal("input.table \"%s\" is not a plain identifier", table);
        goto done;
    }
    repository = nested(req->payload, "repository", "full_name");
    pusher = nested(req->payload, "pusher", "name");
    ref = hw_json_get_string(req->payload, "ref");
    after = hw_json_get_string(req->payload, "after");
    hw_str commits_raw;
    long commits = 0;
    if (hw_json_find(req->payload, "commits", &commits_raw) == HW_JSON_FOUND)
        commits = hw_json_array_len(commits_raw);
    if (commits < 0)
        commits = 0;
    const char *repo_s = repository ? repository : "unknown";
    const char *pusher_s = pusher ? pusher : "someone";
    hw_info("c plugin: %s pushed %ld commit(s) to %s (event %s, attempt %lld)", pusher_s, commits, repo_s,
            req->event_id, req->attempt);

    hw_buf text = {0};
    hw_buf_printf(&text, "%s pushed %ld commit(s) to %s", pusher_s, commits, repo_s);
    hw_buf_puts(&body, "{\"text\":");
    hw_buf_json_cstr(&body, text.data);
    hw_buf_puts(&body, ",\"repository\":");
    hw_buf_json_cstr(&body, repo_s);
    hw_buf_puts(&body, ",\"ref\":");
    hw_buf_json_cstr(&body, ref ? ref : "");
    hw_buf_puts(&body, ",\"after\":");
    hw_buf_json_cstr(&body, after ? after : "");
    hw_buf_puts(&body, ",\"event_id\":");
    hw_buf_json_cstr(&body, req->event_id);
    hw_buf_puts(&body, "}");
    if (body.failed || text.failed) {
        hw_buf_free(&text);
        rc = hw_retryable(-1, "out of memory");
        goto done;
    }

    static const char *const headers[] = {"content-type", "application/json", NULL};
    hw_http_request http = {"POST", url, headers, body.data, body.len};
    char *error = NULL;
    if (hw_http_send(&http, &resp, &error) != 0) {
        hw_buf_free(&text);
        rc = hw_retryable(-1, "http POST %s: %s", url, error ? error : "out of memory");
        free(error);
        goto done;
    }
    have_resp = 1;
    if (resp.status == 429 || resp.status >= 500) {
        hw_buf_free(&text);
        retry_after = hw_http_header(&resp, "retry-after");
        long long secs = retry_after ? atoll(retry_after) : 0;
        rc = hw_retryable(secs > 0 ? secs * 1000 : -1, "the receiver answered %d", resp.status);
        goto done;
    }
    if (resp.status < 200 || resp.status > 299) {
        hw_buf_free(&text);
        rc = hw_fatal("the receiver answered %d: %.200s", resp.status, resp.body);
        goto done;
    }
    hw_debug("c plugin: the receiver answered %d", resp.status);

    hw_buf_printf(&sql, "INSERT INTO %s (event_id, repository, pusher, commits) VALUES (?, ?, ?, ?)", table);
    hw_buf_puts(&params, "[");
    hw_buf_json_cstr(&params, req->event_id);
    hw_buf_puts(&params, ",");
    hw_buf_json_cstr(&params, repo_s);
    hw_buf_puts(&params, ",");
    hw_buf_json_cstr(&params, pusher_s);
    hw_buf_printf(&params, ",%ld]", commits);
    if (sql.failed || params.failed) {
        hw_buf_free(&text);
        rc = hw_retryable(-1, "out of memory");
        goto done;
    }
    if (hw_db_execute(connection, sql.data, params.data, &db_result) != 0) {
        hw_buf_free(&text);
        rc = hw_retryable(-1, "db %s: %s", connection, db_result ? db_result : "out of memory");
        goto done;
    }
    long long affected = 0;
    hw_json_get_int(hw_str_of(db_result), "rows_affected", &affected);
    int already = strstr(db_result, "\"already_applied\":true") != NULL;

    hw_buf_puts(&out, "{\"posted\":{\"url\":");
    hw_buf_json_cstr(&out, url);
    hw_buf_printf(&out, ",\"status\":%d},\"inserted\":{\"connection\":", resp.status);
    hw_buf_json_cstr(&out, connection);
    hw_buf_puts(&out, ",\"table\":");
    hw_buf_json_cstr(&out, table);
    hw_buf_printf(&out, ",\"rows_affected\":%lld,\"already_applied\":%s},\"text\":", affected,
                  already ? "true" : "false");
    hw_buf_json_cstr(&out, text.data);
    hw_buf_puts(&out, "}");
    hw_buf_free(&text);
    rc = out.failed ? hw_retryable(-1, "out of memory") : hw_output(out.data);

done:
    if (have_resp)
        hw_http_response_free(&resp);
    for (int i = 0; i < 3; i++)
        free(in[i]);
    free(repository);
    free(pusher);
    free(ref);
    free(after);
    free(retry_after);
    free(db_result);
    hw_buf_free(&body);
    hw_buf_free(&sql);
    hw_buf_free(&params);
    hw_buf_free(&out);
    return rc;
}

int main(void) {
    hw_request req;
    if (hw_request_read(&req) != 0)
        return 1;
    int rc = run(&req);
    hw_request_free(&req);
    return rc;
}
