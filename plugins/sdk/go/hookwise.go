// Package hookwise is the Go SDK for hookwise plugins.
//
// A Go plugin is a WASI command module (GOOS=wasip1 GOARCH=wasm) that talks to hookwise
// through the `hookwise` import module: it reads its request, logs, sends HTTP requests
// through the plugin's `allow.http` grant, runs SQL on its `allow.db` connections, and
// answers with an output or an error. A plugin is a function given to Run:
//
//	func main() {
//		hookwise.Run(func(req *hookwise.Request) (any, error) {
//			var in struct{ URL string `json:"url"` }
//			if err := req.DecodeInput(&in); err != nil {
//				return nil, err // fatal: the input does not fit
//			}
//			hookwise.Info("event %s", req.Event.ID)
//			return map[string]any{"ok": true}, nil
//		})
//	}
//
// Build with:
//
//	GOOS=wasip1 GOARCH=wasm go build -o plugin.wasm .
//
// Only Go's standard library is used (encoding/json).
package hookwise

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// Context says which action of which rule this call runs.
type Context struct {
	RuleID      string `json:"rule_id"`
	ActionIndex int    `json:"action_index"`
	// Attempt counts from 1.
	Attempt int `json:"attempt"`
	// IdempotencyKey is the same on every attempt of one execution; hookwise sends it as
	// the `Idempotency-Key` header of every HTTP request and applies database statements
	// at most once per key.
	IdempotencyKey string `json:"idempotency_key"`
}

// Event is the event that matched the rule.
type Event struct {
	ID         string `json:"id"`
	Source     string `json:"source"`
	EventType  string `json:"event_type"`
	ReceivedAt string `json:"received_at"`
	// Headers are the request headers as received, as [name, value] pairs.
	Headers [][2]string `json:"headers"`
	// Payload is the event's JSON body; see DecodePayload.
	Payload json.RawMessage `json:"payload"`
}

// Header returns the first header called name (case-insensitive), and whether there is one.
func (e *Event) Header(name string) (string, bool) {
	for _, h := range e.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1], true
		}
	}
	return "", false
}

// DecodePayload unmarshals the payload into v. A payload that does not fit is a fatal error.
func (e *Event) DecodePayload(v any) error {
	if len(e.Payload) == 0 {
		return Fatalf("the event has no payload")
	}
	if err := json.Unmarshal(e.Payload, v); err != nil {
		return Fatalf("payload: %v", err)
	}
	return nil
}

// Request is what one call gets: its context, the event and the rendered input (the
// rule's `with:`).
type Request struct {
	Ctx   Context         `json:"ctx"`
	Event Event           `json:"event"`
	Input json.RawMessage `json:"input"`
}

// DecodeInput unmarshals the input into v. An input that does not fit is a fatal error:
// retrying would not change it.
func (r *Request) DecodeInput(v any) error {
	if len(r.Input) == 0 || string(r.Input) == "null" {
		return Fatalf("the action has no input (`with:`)")
	}
	if err := json.Unmarshal(r.Input, v); err != nil {
		return Fatalf("input: %v", err)
	}
	return nil
}

// ReadRequest reads this call's request from the host.
func ReadRequest() (*Request, error) {
	n := hwRequestRead(nil, 0)
	if n <= 0 {
		return nil, Fatalf("the host gave no request")
	}
	buf := make([]byte, n)
	if got := hwRequestRead(unsafe.Pointer(&buf[0]), n); got != n {
		return nil, Fatalf("the request changed size while read (%d, then %d bytes)", n, got)
	}
	var req Request
	if err := json.Unmarshal(buf, &req); err != nil {
		return nil, Fatalf("request: %v", err)
	}
	return &req, nil
}

// ---- errors --------------------------------------------------------------------------

// PluginError is a plugin failure: Fatal (the execution is dead-lettered at once) or
// retryable (hookwise tries again by the rule's retry policy, not before RetryAfter when set).
type PluginError struct {
	Fatal      bool
	Message    string
	RetryAfter time.Duration
}

func (e *PluginError) Error() string { return e.Message }

// Fatalf is an error retrying cannot fix (bad input, a 4xx answer).
func Fatalf(format string, args ...any) error {
	return &PluginError{Fatal: true, Message: fmt.Sprintf(format, args...)}
}

// Retryable is an error that may pass on a later attempt (a 5xx or 429 answer, a timeout);
// retryAfter > 0 asks hookwise to wait at least that long.
func Retryable(retryAfter time.Duration, format string, args ...any) error {
	return &PluginError{Message: fmt.Sprintf(format, args...), RetryAfter: retryAfter}
}

// ---- answering -----------------------------------------------------------------------

// Run reads the request, calls handle and answers with what it returns: the output (any
// value encoding/json can marshal; nil is JSON null) or the error. A *PluginError says fatal or
// retryable; any other error is retryable. A panic in handle is a retryable error naming it.
func Run(handle func(req *Request) (any, error)) {
	req, err := ReadRequest()
	if err != nil {
		Fail(err)
		return
	}
	out, err := call(handle, req)
	if err != nil {
		Fail(err)
		return
	}
	if err := Output(out); err != nil {
		Fail(err)
	}
}

func call(handle func(req *Request) (any, error), req *Request) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return handle(req)
}

// Output makes the call succeed with v as its output JSON. The last answer given wins.
func Output(v any) error {
	text, err := json.Marshal(v)
	if err != nil {
		return Fatalf("output: %v", err)
	}
	hwOutput(bytesPtr(text), int32(len(text)))
	return nil
}

// Fail makes the call fail with err (see Run for how it is classified).
func Fail(err error) {
	var e *PluginError
	kind, retryAfter, message := int32(0), int64(-1), ""
	if errors.As(err, &e) {
		message = e.Message
		if e.Fatal {
			kind = 1
		} else if e.RetryAfter > 0 {
			retryAfter = e.RetryAfter.Milliseconds()
		}
	} else if err != nil {
		message = err.Error()
	}
	if message == "" {
		message = "the plugin failed"
	}
	b := []byte(message)
	hwError(kind, bytesPtr(b), int32(len(b)), retryAfter)
}

// ---- logging -------------------------------------------------------------------------

// Level of a log line.
type Level int32

const (
	LevelTrace Level = 0
	LevelDebug Level = 1
	LevelInfo  Level = 2
	LevelWarn  Level = 3
	LevelError Level = 4
)

// Log records one log line of this call (shown by `hookwise logs EVENT_ID`).
func Log(level Level, message string) {
	b := []byte(message)
	hwLog(int32(level), bytesPtr(b), int32(len(b)))
}

func Trace(format string, args ...any) { Log(LevelTrace, fmt.Sprintf(format, args...)) }
func Debug(format string, args ...any) { Log(LevelDebug, fmt.Sprintf(format, args...)) }
func Info(format string, args ...any)  { Log(LevelInfo, fmt.Sprintf(format, args...)) }
func Warn(format string, args ...any)  { Log(LevelWarn, fmt.Sprintf(format, args...)) }

func Error(format string, args ...any) { Log(LevelError, fmt.Sprintf(format, args...)) }

// ---- HTTP ----------------------------------------------------------------------------

// HTTPRequest is one request. The URL must be granted by the plugin's `allow.http`.
type HTTPRequest struct {
	Method  string            `json:"method,omitempty"` // GET when empty
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	// Body is sent as is; set BodyBytes instead for binary data.
	Body      string `json:"body,omitempty"`
	BodyBytes []byte `json:"body_base64,omitempty"` // encoding/json writes []byte as base64
}

// HTTPResponse is the whole answer.
type HTTPResponse struct {
	Status  int         `json:"status"`
	Headers [][2]string `json:"headers"`
	// Body holds the body when it is UTF-8 text, BodyBytes when it is not.
	Body      string `json:"body"`
	BodyBytes []byte `json:"body_base64"`
}

// Header returns the first response header called name (case-insensitive), or "".
func (r *HTTPResponse) Header(name string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// Send sends req and returns the answer, whatever its status. The error is the host's: the
// address is not granted or restricted, the connection failed, a limit was hit.
func Send(req HTTPRequest) (*HTTPResponse, error) {
	text, err := json.Marshal(req)
	if err != nil {
		return nil, Fatalf("http request: %v", err)
	}
	result, err := takeResult(hwHTTPSend(bytesPtr(text), int32(len(text))))
	if err != nil {
		return nil, fmt.Errorf("http %s %s: %w", methodOf(req), req.URL, err)
	}
	var resp HTTPResponse
	if err := json.Unmarshal(result, &resp); err != nil {
		return nil, fmt.Errorf("http result: %v", err)
	}
	return &resp, nil
}

func methodOf(req HTTPRequest) string {
	if req.Method == "" {
		return "GET"
	}
	return req.Method
}

// PostJSON sends body as JSON with `Content-Type: application/json`.
func PostJSON(url string, body any) (*HTTPResponse, error) {
	text, err := json.Marshal(body)
	if err != nil {
		return nil, Fatalf("http body: %v", err)
	}
	return Send(HTTPRequest{
		Method:  "POST",
		URL:     url,
		Headers: map[string]string{"content-type": "application/json"},
		Body:    string(text),
	})
}

// ---- database ------------------------------------------------------------------------

// DBResult is what one statement gave.
type DBResult struct {
	// Rows of a statement that returns rows, as column name -> value.
	Rows []map[string]any `json:"rows"`
	// RowsAffected by a statement that changes rows.
	RowsAffected int64 `json:"rows_affected"`
	// Truncated: more rows existed than the host's per-statement limit.
	Truncated bool `json:"truncated"`
	// AlreadyApplied: an earlier attempt with this idempotency key committed, so nothing ran.
	AlreadyApplied bool `json:"already_applied"`
}

// Exec runs one statement on the granted connection, binding params (any JSON values) to
// its placeholders (`?` on SQLite and MySQL, `$1` on PostgreSQL). Every statement of one
// call runs in one transaction, committed only when the call succeeds.
func Exec(connection, sql string, params ...any) (*DBResult, error) {
	if params == nil {
		params = []any{}
	}
	p, err := json.Marshal(params)
	if err != nil {
		return nil, Fatalf("sql params: %v", err)
	}
	c, s := []byte(connection), []byte(sql)
	result, err := takeResult(hwDBExecute(bytesPtr(c), int32(len(c)), bytesPtr(s), int32(len(s)), bytesPtr(p), int32(len(p))))
	if err != nil {
		return nil, fmt.Errorf("db %s: %w", connection, err)
	}
	var out DBResult
	if err := json.Unmarshal(result, &out); err != nil {
		return nil, fmt.Errorf("db result: %v", err)
	}
	return &out, nil
}

// ---- plumbing ------------------------------------------------------------------------

// takeResult reads the result of the last http_send/db_execute that returned n.
func takeResult(n int32) ([]byte, error) {
	size := n
	if size < 0 {
		size = -size
	}
	buf := make([]byte, size)
	if size > 0 {
		hwResultRead(unsafe.Pointer(&buf[0]), size)
	}
	if n < 0 {
		return nil, errors.New(string(buf))
	}
	return buf, nil
}

// bytesPtr points at b's first byte (nil for an empty slice; the host reads no bytes then).
func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}
