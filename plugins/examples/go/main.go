// The Go example plugin: for a GitHub push it logs, POSTs a summary to `input.url`
// (through the plugin's `allow.http` grant), records the push as a row of `input.table`
// on `input.connection` (`allow.db`), and answers what it did.
//
//	input: {"url": "https://...", "connection": "app", "table": "pushes"}
//
// The table needs the columns (event_id, repository, pusher, commits); `?` placeholders
// (SQLite, MySQL). A missing input key is a fatal error; an HTTP answer of 429 or 5xx is a
// retryable one (honouring a Retry-After of seconds); any other non-2xx answer is fatal.
package main

import (
	"strconv"
	"strings"
	"time"

	"hookwise/sdk"
)

type input struct {
	URL        string `json:"url"`
	Connection string `json:"connection"`
	Table      string `json:"table"`
}

type push struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
	Pusher struct {
		Name string `json:"name"`
	} `json:"pusher"`
	Commits []struct {
		Message string `json:"message"`
	} `json:"commits"`
}

func main() {
	hookwise.Run(handle)
}

func handle(req *hookwise.Request) (any, error) {
	var in input
	if err := req.DecodeInput(&in); err != nil {
		return nil, err
	}
	for _, kv := range [][2]string{{"url", in.URL}, {"connection", in.Connection}, {"table", in.Table}} {
		if kv[1] == "" {
			return nil, hookwise.Fatalf("input.%s is missing", kv[0])
		}
	}
	// A table name cannot be a bound parameter: allow plain identifiers only.
	if !identifier(in.Table) {
		return nil, hookwise.Fatalf("input.table %q is not a plain identifier", in.Table)
	}
	var p push
	if err := req.Event.DecodePayload(&p); err != nil {
		return nil, err
	}
	if p.Repository.FullName == "" {
		p.Repository.FullName = "unknown"
	}
	if p.Pusher.Name == "" {
		p.Pusher.Name = "someone"
	}
	hookwise.Info("go plugin: %s pushed %d commit(s) to %s (event %s, attempt %d)",
		p.Pusher.Name, len(p.Commits), p.Repository.FullName, req.Event.ID, req.Ctx.Attempt)

	text := p.Pusher.Name + " pushed " + strconv.Itoa(len(p.Commits)) + " commit(s) to " + p.Repository.FullName
	resp, err := hookwise.PostJSON(in.URL, map[string]any{
		"text":       text,
		"repository": p.Repository.FullName,
		"ref":        p.Ref,
		"after":      p.After,
		"event_id":   req.Event.ID,
	})
	if err != nil {
		return nil, hookwise.Retryable(0, "%v", err)
	}
	switch {
	case resp.Status == 429 || resp.Status >= 500:
		return nil, hookwise.Retryable(retryAfter(resp.Header("retry-after")),
			"the receiver answered %d", resp.Status)
	case resp.Status < 200 || resp.Status > 299:
		return nil, hookwise.Fatalf("the receiver answered %d: %s", resp.Status, clip(resp.Body, 200))
	}
	hookwise.Debug("go plugin: the receiver answered %d", resp.Status)

	res, err := hookwise.Exec(in.Connection,
		"INSERT INTO "+in.Table+" (event_id, repository, pusher, commits) VALUES (?, ?, ?, ?)",
		req.Event.ID, p.Repository.FullName, p.Pusher.Name, len(p.Commits))
	if err != nil {
		return nil, hookwise.Retryable(0, "%v", err)
	}
	return map[string]any{
		"posted":   map[string]any{"url": in.URL, "status": resp.Status},
		"inserted": map[string]any{"connection": in.Connection, "table": in.Table, "rows_affected": res.RowsAffected, "already_applied": res.AlreadyApplied},
		"text":     text,
	}, nil
}

func identifier(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// retryAfter reads a Retry-After of seconds (an HTTP date is not honoured: 0, no hint).
func retryAfter(v string) time.Duration {
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || secs <= 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
