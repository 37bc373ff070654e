package filters

import (
	"regexp"
	"strings"
)

// LogFilter keeps bearer tokens out of Gantry's log at every -v. From -v=8
// on, client-go logs the body of each request and response, and the
// TokenReviews of delegated authentication carry the token of whoever
// called Gantry directly (Prometheus scraping /metrics, for one) in
// spec.token, in the request and again in the response. Install it with
// klog.SetLogFilter before anything logs.
type LogFilter struct{}

// tokenField is a JSON "token" member up to its closing quote, or to the end
// of a body client-go truncated (below -v=10) inside the token.
var tokenField = regexp.MustCompile(`("token"\s*:\s*")[^"]*`)

const masked = "<masked>"

func redact(s string) string {
	if !strings.Contains(s, `"token"`) {
		return s
	}
	return tokenField.ReplaceAllString(s, "${1}"+masked)
}

// redactAll returns args with every string and []byte redacted, copying the
// slice only when something changes: callers own it.
func redactAll(args []any) []any {
	out := args
	for i, a := range args {
		var r any
		switch v := a.(type) {
		case string:
			if s := redact(v); s != v {
				r = s
			}
		case []byte:
			if s := redact(string(v)); s != string(v) {
				r = s
			}
		}
		if r == nil {
			continue
		}
		if &out[0] == &args[0] {
			out = append([]any(nil), args...)
		}
		out[i] = r
	}
	return out
}

// Filter redacts the arguments of klog.Info and the like.
func (LogFilter) Filter(args []any) []any { return redactAll(args) }

// FilterF redacts the format and arguments of klog.Infof and the like.
func (LogFilter) FilterF(format string, args []any) (string, []any) {
	return redact(format), redactAll(args)
}

// FilterS redacts the message and values of structured and contextual
// logging (klog.InfoS, logr), which is how client-go logs bodies.
func (LogFilter) FilterS(msg string, keysAndValues []any) (string, []any) {
	return redact(msg), redactAll(keysAndValues)
}
