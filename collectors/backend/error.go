package backend

import "fmt"

// Error is a failed backend call. Its message names the backend and
// the reason, never the backend's URL or credentials.
type Error struct {
	Backend string
	// Reason is one of timeout, unreachable, bad_query, backend_error,
	// bad_response, redirected (a redirect that is not followed) and
	// too_large (an answer over one of the Limits, a *LimitError).
	Reason string
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Backend, e.Reason, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// BadQuery reports whether the backend rejected the query itself, as opposed
// to being unavailable.
func (e *Error) BadQuery() bool { return e.Reason == "bad_query" }
