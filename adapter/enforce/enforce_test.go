package enforce

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/prometheus/promql/parser"
)

const (
	label = "namespace"
	ns    = "team-a"
)

// TestPromQL covers the escape attempts of issue 16 and the shapes of real
// rules: each either comes back confined (want) or is refused with a
// message naming what is at fault (wantErr).
func TestPromQL(t *testing.T) {
	for _, tc := range []struct {
		name, query, want, wantErr string
	}{
		{
			name:  "no namespace matcher gets one",
			query: `sum(rate(http_requests_total[1m]))`,
			want:  `sum(rate(http_requests_total{namespace="team-a"}[1m]))`,
		},
		{
			name:  "the rule's own namespace is kept once",
			query: `sum by (pod) (rate(http_requests_total{namespace="team-a",pod=~"a|b"}[2m]))`,
			want:  `sum by (pod) (rate(http_requests_total{namespace="team-a",pod=~"a|b"}[2m]))`,
		},
		{
			name:  "duplicate matchers on the rule's namespace become one",
			query: `x{namespace="team-a",namespace="team-a"}`,
			want:  `x{namespace="team-a"}`,
		},
		{
			name:    "another namespace is refused",
			query:   `sum(rate(http_requests_total{namespace="team-b"}[1m]))`,
			wantErr: `namespace="team-b" in http_requests_total{namespace="team-b"}: a namespaced rule reads only namespace="team-a"`,
		},
		{
			name:    "both namespaces in one selector are refused",
			query:   `x{namespace="team-a",namespace="team-b"}`,
			wantErr: `namespace="team-b"`,
		},
		{
			name:    "a regexp on the namespace is refused",
			query:   `http_requests_total{namespace=~".+"}`,
			wantErr: `namespace=~".+" in http_requests_total`,
		},
		{
			name:    "a regexp that matches only the rule's namespace is refused too",
			query:   `x{namespace=~"team-a"}`,
			wantErr: `namespace=~"team-a"`,
		},
		{
			name:  "namespace!=\"\", as prometheus-adapter rules write it, is implied and dropped",
			query: `sum by (pod) (rate(x{namespace!="",pod!=""}[1m]))`,
			want:  `sum by (pod) (rate(x{namespace="team-a",pod!=""}[1m]))`,
		},
		{
			name:    "a negative matcher on the namespace is refused",
			query:   `x{namespace!="team-b"}`,
			wantErr: `namespace!="team-b"`,
		},
		{
			name:    "a negative regexp on the namespace is refused",
			query:   `x{namespace!~"team-b"}`,
			wantErr: `namespace!~"team-b"`,
		},
		{
			name:  "every metric name is read from the namespace only",
			query: `{__name__=~".+"}`,
			want:  `{__name__=~".+",namespace="team-a"}`,
		},
		{
			name:  "both sides of or are confined",
			query: `a or b`,
			want:  `a{namespace="team-a"} or b{namespace="team-a"}`,
		},
		{
			name:  "both sides of unless with on() are confined",
			query: `sum(a) unless on () sum(b{job="x"})`,
			want:  `sum(a{namespace="team-a"}) unless on () sum(b{job="x",namespace="team-a"})`,
		},
		{
			name:  "a join on the namespace label is confined on both sides",
			query: `a * on (namespace, pod) group_left (node) kube_pod_info`,
			want:  `a{namespace="team-a"} * on (namespace, pod) group_left (node) kube_pod_info{namespace="team-a"}`,
		},
		{
			name:    "a join whose other side names another namespace is refused",
			query:   `a * on () group_left () b{namespace="team-b"}`,
			wantErr: `namespace="team-b" in b{namespace="team-b"}`,
		},
		{
			name:  "a subquery's selectors are confined",
			query: `max_over_time(rate(x[1m])[10m:30s])`,
			want:  `max_over_time(rate(x{namespace="team-a"}[1m])[10m:30s])`,
		},
		{
			name:  "a nested subquery's selectors are confined",
			query: `avg_over_time((sum(rate(x[1m])) / sum(rate(y[1m])))[5m:])`,
			want:  `avg_over_time((sum(rate(x{namespace="team-a"}[1m])) / sum(rate(y{namespace="team-a"}[1m])))[5m:])`,
		},
		{
			name:    "label_replace writing the namespace label is refused",
			query:   `label_replace(x, "namespace", "team-b", "", "")`,
			wantErr: `label_replace() writes the label "namespace"`,
		},
		{
			name:    "label_join writing the namespace label is refused",
			query:   `label_join(x, "namespace", "", "pod")`,
			wantErr: `label_join() writes the label "namespace"`,
		},
		{
			name:    "count_values writing the namespace label is refused",
			query:   `count_values("namespace", x)`,
			wantErr: `count_values writes the label "namespace"`,
		},
		{
			name:  "label_replace reading the namespace label is confined",
			query: `label_replace(x, "ns", "$1", "namespace", "(.*)")`,
			want:  `label_replace(x{namespace="team-a"}, "ns", "$1", "namespace", "(.*)")`,
		},
		{
			name:  "absent's argument is confined",
			query: `absent(up{job="web"})`,
			want:  `absent(up{job="web",namespace="team-a"})`,
		},
		{
			name:  "absent_over_time's argument is confined",
			query: `absent_over_time(up[5m])`,
			want:  `absent_over_time(up{namespace="team-a"}[5m])`,
		},
		{
			name:    "info is refused",
			query:   `info(rate(http_requests_total[1m]))`,
			wantErr: `function info() is not allowed in a namespaced rule: it joins the argument with target_info series`,
		},
		{
			name:    "info with a data selector is refused",
			query:   `sum(info(up, {k8s_cluster_name=~".+"}))`,
			wantErr: `function info() is not allowed`,
		},
		{
			name:  "offset and @ keep their values",
			query: `rate(x[5m] offset 1h) - rate(x[5m] @ 1700000000)`,
			want:  `rate(x{namespace="team-a"}[5m] offset 1h) - rate(x{namespace="team-a"}[5m] @ 1700000000.000)`,
		},
		{
			name:  "@ start() and a negative offset on a subquery",
			query: `max_over_time(x[1h:5m] @ start() offset -5m)`,
			want:  `max_over_time(x{namespace="team-a"}[1h:5m] @ start() offset -5m)`,
		},
		{
			name:  "strings with braces stay strings",
			query: `label_replace(x{path="/a}{b"}, "dst", "{namespace=\"team-b\"}", "src", "(.*)")`,
			want:  `label_replace(x{namespace="team-a",path="/a}{b"}, "dst", "{namespace=\"team-b\"}", "src", "(.*)")`,
		},
		{
			name:  "a comment is dropped, not read",
			query: "x # {namespace=\"team-b\"}\n",
			want:  `x{namespace="team-a"}`,
		},
		{
			name:  "a quoted UTF-8 metric name reads back as the same metric",
			query: `{"http.requests.total", pod="a"}`,
			want:  `{__name__="http.requests.total",namespace="team-a",pod="a"}`,
		},
		{
			name:  "a quoted namespace label is the same label",
			query: `{"namespace"="team-a"}`,
			want:  `{namespace="team-a"}`,
		},
		{
			name:    "a quoted namespace label naming another namespace is refused",
			query:   `x{"namespace"="team-b"}`,
			wantErr: `namespace="team-b"`,
		},
		{
			name:  "expressions without selectors read no series",
			query: `vector(1) + time()`,
			want:  `vector(1) + time()`,
		},
		{
			name:    "a query that does not parse is refused",
			query:   `sum(rate(x[1m])`,
			wantErr: `does not parse: `,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PromQL(tc.query, label, ns)
			checkResult(t, got, err, tc.want, tc.wantErr)
			if err == nil {
				if err := Check(got, label, ns); err != nil {
					t.Errorf("Check(%s) = %v", got, err)
				}
			}
		})
	}
}

func checkResult(t *testing.T, got string, err error, want, wantErr string) {
	t.Helper()
	if wantErr != "" {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("got %q, %v; want an *Error containing %q", got, err, wantErr)
		}
		if !strings.Contains(e.Reason, wantErr) {
			t.Errorf("error %q does not contain %q", e.Reason, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("confined query (-want +got):\n%s", diff)
	}
}

func TestSelector(t *testing.T) {
	for _, tc := range []struct {
		name, selector, want, wantErr string
	}{
		{
			name:     "a name pattern, as the shipped ConfigMap's rule has it",
			selector: `{__name__=~"^(http|grpc)_.+_total$",namespace!="",pod!=""}`,
			want:     `{__name__=~"^(http|grpc)_.+_total$",namespace="team-a",pod!=""}`,
		},
		{
			name:     "a regexp on the namespace",
			selector: `{__name__=~"x",namespace=~"team-.*"}`,
			wantErr:  `namespace=~"team-.*" in {__name__=~"x",namespace=~"team-.*"}: a namespaced rule reads only namespace="team-a"`,
		},
		{
			name:     "a metric name with matchers",
			selector: `http_requests_total{job="x"}`,
			want:     `http_requests_total{job="x",namespace="team-a"}`,
		},
		{
			name:     "every series",
			selector: `{__name__=~".+"}`,
			want:     `{__name__=~".+",namespace="team-a"}`,
		},
		{
			name:     "the rule's namespace",
			selector: `{__name__="queue_messages_ready",namespace="team-a"}`,
			want:     `queue_messages_ready{namespace="team-a"}`,
		},
		{
			name:     "another namespace",
			selector: `x{namespace="team-b"}`,
			wantErr:  `namespace="team-b" in x{namespace="team-b"}`,
		},
		{
			name:     "a quoted UTF-8 name",
			selector: `{"http.requests"}`,
			want:     `{__name__="http.requests",namespace="team-a"}`,
		},
		{
			name:     "not a selector",
			selector: `sum(x)`,
			wantErr:  `not a series selector`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Selector(tc.selector, label, ns)
			checkResult(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func TestLogQL(t *testing.T) {
	for _, tc := range []struct {
		name, query, want, wantErr string
	}{
		{
			name:  "a stream selector gets the namespace",
			query: `sum by (pod) (rate({app="web", pod=~"a|b"} |= "error" [2m]))`,
			want:  `sum by (pod) (rate({app="web", pod=~"a|b", namespace="team-a"} |= "error" [2m]))`,
		},
		{
			name:    "another namespace is refused",
			query:   `count_over_time({namespace="team-b"}[1m])`,
			wantErr: `namespace="team-b" in {namespace="team-b"}: a namespaced rule reads only namespace="team-a"`,
		},
		{
			name:  "both stream selectors of a binary expression are confined",
			query: `sum(count_over_time({app="web"}[1m])) / sum(count_over_time({app="api", namespace="team-a"}[1m]))`,
			want:  `sum(count_over_time({app="web", namespace="team-a"}[1m])) / sum(count_over_time({app="api", namespace="team-a"}[1m]))`,
		},
		{
			name:    "the second of two stream selectors naming another namespace is refused",
			query:   `count_over_time({app="web"}[1m]) or count_over_time({namespace=~"team-.*"}[1m])`,
			wantErr: `namespace=~"team-.*"`,
		},
		{
			name:  "braces in strings are not selectors",
			query: "sum(count_over_time({app=\"web\"} |= \"{namespace=\\\"team-b\\\"}\" | line_format `{{.namespace}}` [1m]))",
			want:  "sum(count_over_time({app=\"web\", namespace=\"team-a\"} |= \"{namespace=\\\"team-b\\\"}\" | line_format `{{.namespace}}` [1m]))",
		},
		{
			name:  "a closing brace in a selector's string",
			query: `count_over_time({app="a}b"}[1m])`,
			want:  `count_over_time({app="a}b", namespace="team-a"}[1m])`,
		},
		{
			name:    "no stream selector",
			query:   `vector(1)`,
			wantErr: `no stream selector`,
		},
		{
			name:    "a single quote could hide a selector from this reader",
			query:   `count_over_time({app="web"} |= '"' [1m]) or count_over_time({namespace="team-b"} |= '"' [1m])`,
			wantErr: `single quote at offset`,
		},
		{
			name:    "a comment could hide a selector from this reader",
			query:   "count_over_time({app=\"web\"}[1m]) # \"\n or {namespace=\"team-b\"} # \"",
			wantErr: `comment at offset`,
		},
		{
			name:    "an unterminated string",
			query:   `{app="web} |= "x"`,
			wantErr: `unterminated string literal`,
		},
		{
			name:    "an unclosed selector",
			query:   `count_over_time({app="web"[1m])`,
			wantErr: `stream selector`,
		},
		{
			name:    "a selector that does not parse",
			query:   `{app}`,
			wantErr: `stream selector {app} does not parse`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LogQL(tc.query, label, ns)
			checkResult(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func TestTarget(t *testing.T) {
	for _, tc := range []struct{ name, label, namespace string }{
		{"empty namespace", "namespace", ""},
		{"reserved label", "__name__", "team-a"},
		{"invalid label", "kubernetes.io/namespace", "team-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for fn, f := range map[string]func(string, string, string) (string, error){"PromQL": PromQL, "Selector": Selector, "LogQL": LogQL} {
				var e *Error
				if got, err := f(`{a="b"}`, tc.label, tc.namespace); !errors.As(err, &e) {
					t.Errorf("%s = %q, %v; want an *Error", fn, got, err)
				}
			}
		})
	}
}

// TestEveryParserFunctionIsJudged fails when the PromQL parser knows a
// function that is neither allowed nor refused: a Prometheus upgrade that
// adds one needs a decision, and until then a rule calling it is refused.
func TestEveryParserFunctionIsJudged(t *testing.T) {
	var unjudged, both []string
	for _, name := range slices.Sorted(maps.Keys(parser.Functions)) {
		_, refused := refusedFunctions[name]
		switch {
		case allowedFunctions[name] && refused:
			both = append(both, name)
		case !allowedFunctions[name] && !refused:
			unjudged = append(unjudged, name)
		}
	}
	if len(unjudged) > 0 {
		t.Errorf("functions neither allowed nor refused (add each to allowedFunctions or refusedFunctions in functions.go): %v", unjudged)
	}
	if len(both) > 0 {
		t.Errorf("functions both allowed and refused: %v", both)
	}
	for name := range allowedFunctions {
		if parser.Functions[name] == nil {
			t.Errorf("allowed function %s() is unknown to the parser", name)
		}
	}
}

// TestUnknownFunctionRefused shows that a function missing from the
// allow-list is refused with its name, whatever the parser accepts.
func TestUnknownFunctionRefused(t *testing.T) {
	allowed := allowedFunctions
	t.Cleanup(func() { allowedFunctions = allowed })
	allowedFunctions = maps.Clone(allowed)
	delete(allowedFunctions, "rate")
	_, err := PromQL(`sum(rate(x[1m]))`, label, ns)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Reason, "function rate() is not allowed in a namespaced rule: it is not on Gantry's list") {
		t.Errorf("err = %v; want an *Error naming rate()", err)
	}
}
