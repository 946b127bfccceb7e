/*
 * __NAME__: a hookwise plugin in C.
 *
 * hookwise runs it once per action as a WASI command: main reads the request (the rule's
 * context, the event and the input rendered from the rule's `with:`), and answers with
 * hw_output (success), hw_fatal or hw_retryable. Build with ./build.sh; try it with
 *
 *   hookwise plugins run __NAME__.wasm --payload event.json --source github --event-type push --input @input.json
 *
 * JSON: sdk/hookwise.h finds keys in objects (hw_json_find, hw_json_get_string,
 * hw_json_get_int), walks arrays (hw_json_index, hw_json_array_len) and writes escaped
 * strings into a growable buffer (hw_buf); read its limits there.
 */
#include <stdlib.h>
#include <string.h>

#include "hookwise.h"

static int handle(hw_request *req) {
    /* The input (see input.json). */
    char *greeting = hw_json_get_string(req->input, "greeting");
    if (!greeting || !*greeting) {
        free(greeting);
        /* A fatal error: the execution is dead-lettered at once, without retries. */
        return hw_fatal("input.greeting is missing");
    }
    char *branch_wanted = hw_json_get_string(req->input, "branch"); /* NULL: any branch */
    hw_str flag;
    if (hw_json_find(req->input, "simulate_outage", &flag) == HW_JSON_FOUND && flag.len == 4 &&
        memcmp(flag.ptr, "true", 4) == 0) {
        free(greeting);
        free(branch_wanted);
        /* A retryable error: tried again by the rule's retry policy, not within 5 s. */
        return hw_retryable(5000, "simulated outage, try again later");
    }

    /* The payload (see event.json): payload.ref, payload.pusher.name, ... */
    char *ref = hw_json_get_string(req->payload, "ref");
    const char *branch = ref && strncmp(ref, "refs/heads/", 11) == 0 ? ref + 11 : (ref ? ref : "");
    hw_str pusher_obj, repo_obj, commits;
    char *pusher = hw_json_find(req->payload, "pusher", &pusher_obj) == HW_JSON_FOUND
                       ? hw_json_get_string(pusher_obj, "name")
                       : NULL;
    char *repository = hw_json_find(req->payload, "repository", &repo_obj) == HW_JSON_FOUND
                           ? hw_json_get_string(repo_obj, "full_name")
                           : NULL;
    long n_commits = hw_json_find(req->payload, "commits", &commits) == HW_JSON_FOUND
                         ? hw_json_array_len(commits)
                         : 0;

    hw_buf out = {0};
    if (branch_wanted && *branch_wanted && strcmp(branch, branch_wanted) != 0) {
        hw_debug("skipping a push to %s", branch);
        hw_buf_puts(&out, "{\"skipped\":true,\"branch\":");
        hw_buf_json_cstr(&out, branch);
        hw_buf_puts(&out, "}");
    } else {
        hw_info("%s pushed %ld commit(s) to %s (%s), attempt %lld", pusher ? pusher : "someone", n_commits,
                repository ? repository : "?", branch, req->attempt);
        hw_buf message = {0};
        hw_buf_printf(&message, "%s, %s!", greeting, pusher ? pusher : "someone");
        hw_buf_puts(&out, "{\"message\":");
        hw_buf_json_cstr(&out, message.data);
        hw_buf_puts(&out, ",\"repository\":");
        hw_buf_json_cstr(&out, repository);
        hw_buf_puts(&out, ",\"branch\":");
        hw_buf_json_cstr(&out, branch);
        hw_buf_printf(&out, ",\"commits\":%ld}", n_commits);
        hw_buf_free(&message);
    }

    /*
     * HTTP (needs `allow.http` in the plugin's config):
     *
     *   static const char *const headers[] = {"content-type", "application/json", NULL};
     *   hw_http_request http = {"POST", "https://api.example.com/notes", headers, body, strlen(body)};
     *   hw_http_response resp; char *error;
     *   if (hw_http_send(&http, &resp, &error) != 0) return hw_retryable(-1, "%s", error);
     *   if (resp.status >= 500 || resp.status == 429) ... hw_retryable(...)
     *   hw_http_response_free(&resp);
     *
     * SQL (needs `allow.db: [app]` and `connections: {app: ...}`):
     *
     *   char *result;
     *   if (hw_db_execute("app", "INSERT INTO pushes (repository) VALUES (?)", "[\"octo-org/hello-world\"]",
     *                     &result) != 0) ... hw_retryable(-1, "%s", result);
     *   free(result);
     */

    int rc = out.failed ? hw_retryable(-1, "out of memory") : hw_output(out.data);
    hw_buf_free(&out);
    free(greeting);
    free(branch_wanted);
    free(ref);
    free(pusher);
    free(repository);
    return rc;
}

int main(void) {
    hw_request req;
    if (hw_request_read(&req) != 0)
        return 1; /* already answered with a fatal error */
    int rc = handle(&req);
    hw_request_free(&req);
    return rc;
}
