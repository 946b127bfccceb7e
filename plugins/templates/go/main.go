// __NAME__: a hookwise plugin in Go.
//
// hookwise runs it once per action: Run hands the handler the request (the rule's context,
// the event and the input rendered from the rule's `with:`), and turns what it returns into
// the call's output or error. Build with ./build.sh; try it with
//
//	hookwise plugins run __NAME__.wasm --payload event.json --source github --event-type push --input @input.json
package main

import (
	"strings"
	"time"

	"hookwise/sdk"
)

// Input is what a rule's `with:` gives this plugin (see input.json).
type Input struct {
	Greeting string `json:"greeting"`
	// Branch: act only on pushes to this branch ("" for any).
	Branch string `json:"branch"`
	// SimulateOutage makes the call fail with a retryable error, to see retries.
	SimulateOutage bool `json:"simulate_outage"`
}

// Push is the part of a GitHub push payload this plugin reads (see event.json).
type Push struct {
	Ref        string `json:"ref"`
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
	var in Input
	if err := req.DecodeInput(&in); err != nil {
		return nil, err // fatal: retrying cannot fix the input
	}
	if in.Greeting == "" {
		// A fatal error: the execution is dead-lettered at once, without retries.
		return nil, hookwise.Fatalf("input.greeting is missing")
	}
	if in.SimulateOutage {
		// A retryable error: hookwise tries again by the rule's retry policy, not sooner
		// than the hint.
		return nil, hookwise.Retryable(5*time.Second, "simulated outage, try again later")
	}

	var push Push
	if err := req.Event.DecodePayload(&push); err != nil {
		return nil, err
	}
	branch := strings.TrimPrefix(push.Ref, "refs/heads/")
	if in.Branch != "" && branch != in.Branch {
		hookwise.Debug("skipping a push to %s", branch)
		return map[string]any{"skipped": true, "branch": branch}, nil
	}
	message := in.Greeting + ", " + push.Pusher.Name + "!"
	hookwise.Info("%s pushed %d commit(s) to %s (%s), attempt %d",
		push.Pusher.Name, len(push.Commits), push.Repository.FullName, branch, req.Ctx.Attempt)

	// HTTP (needs `allow.http` in the plugin's config):
	//
	//	resp, err := hookwise.PostJSON("https://api.example.com/notes", map[string]any{"text": message})
	//	if err != nil { return nil, hookwise.Retryable(0, "%v", err) }
	//	if resp.Status >= 500 || resp.Status == 429 { return nil, hookwise.Retryable(0, "answered %d", resp.Status) }
	//
	// SQL (needs `allow.db: [app]` and `connections: {app: ...}`):
	//
	//	res, err := hookwise.Exec("app", "INSERT INTO pushes (repository, pusher) VALUES (?, ?)",
	//		push.Repository.FullName, push.Pusher.Name)

	return map[string]any{
		"message":    message,
		"repository": push.Repository.FullName,
		"branch":     branch,
		"commits":    len(push.Commits),
	}, nil
}
