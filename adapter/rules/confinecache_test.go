package rules

import (
	"errors"
	"fmt"
	"testing"

	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/gantry-dev/gantry/adapter/config"
)

// TestConfinedQueriesRepeated: a confined rule asked the same again sends
// exactly the query a freshly confined rule sends for that request, and
// a request it refused is refused again, with the same reason.
func TestConfinedQueriesRepeated(t *testing.T) {
	object := mustConfine(t, podRequestsRule, false)
	external := mustConfine(t, queueRule, true)
	logql := mustConfine(t, logErrorsRule, false)
	requests := []struct {
		name  string
		query func(object, external, logql *Rule) (Query, error)
	}{
		{"object", func(o, _, _ *Rule) (Query, error) {
			return o.ObjectQuery("http_requests_total", Pods, "team-a", []string{"web-1", "web-2"}, mustSelector(t, "code=200"))
		}},
		{"namespace", func(o, _, _ *Rule) (Query, error) {
			return o.NamespaceQuery("http_requests_total", Pods, "team-a", k8slabels.Everything())
		}},
		{"external", func(_, e, _ *Rule) (Query, error) {
			return e.ExternalQuery("queue_messages_ready", "team-a", mustSelector(t, "queue=orders"))
		}},
		{"LogQL", func(_, _, l *Rule) (Query, error) {
			return l.ObjectQuery("", Pods, "team-a", []string{"web-1"}, nil)
		}},
		{"namespace naming team-b", func(o, _, _ *Rule) (Query, error) {
			return o.NamespaceQuery("http_requests_total", Pods, "team-a", mustSelector(t, "namespace=team-b"))
		}},
		{"external naming team-b", func(_, e, _ *Rule) (Query, error) {
			return e.ExternalQuery("queue_messages_ready", "team-a", mustSelector(t, "namespace!=team-b"))
		}},
		{"LogQL naming team-b", func(_, _, l *Rule) (Query, error) {
			return l.ObjectQuery("", Pods, "team-a", []string{"web-1"}, mustSelector(t, "namespace=team-b"))
		}},
	}
	for _, rq := range requests {
		t.Run(rq.name, func(t *testing.T) {
			fresh, freshErr := rq.query(mustConfine(t, podRequestsRule, false), mustConfine(t, queueRule, true), mustConfine(t, logErrorsRule, false))
			for i := range 3 {
				q, err := rq.query(object, external, logql)
				if fmt.Sprint(err) != fmt.Sprint(freshErr) {
					t.Fatalf("request %d: error %v, want %v", i+1, err, freshErr)
				}
				if freshErr != nil {
					var invalid *InvalidSelectorError
					if !errors.As(err, &invalid) || q.Text != "" {
						t.Fatalf("request %d: got %q, %v; want an *InvalidSelectorError and no query", i+1, q.Text, err)
					}
					continue
				}
				if q.Text != fresh.Text {
					t.Errorf("request %d: query\n%s\nwant, as a freshly confined rule sends it,\n%s", i+1, q.Text, fresh.Text)
				}
				if !logqlRule(rq.name) {
					onlyTeamA(t, q.Text)
				}
			}
		})
	}
}

func logqlRule(name string) bool { return name == "LogQL" }

// TestConfineCacheBounded: a rule asked about ever other objects keeps at
// most maxCachedQueries texts, none longer than maxCachedQuery, and each
// query it sends is still confined.
func TestConfineCacheBounded(t *testing.T) {
	r := mustConfine(t, podRequestsRule, false)
	for i := range 3 * maxCachedQueries {
		q, err := r.ObjectQuery("http_requests_total", Pods, "team-a", []string{fmt.Sprintf("web-%d", i)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		onlyTeamA(t, q.Text)
	}
	many := make([]string, 2000)
	for i := range many {
		many[i] = fmt.Sprintf("pod-%04d-abcdefgh", i*7919%10000)
	}
	q, err := r.ObjectQuery("http_requests_total", Pods, "team-a", many, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Text) <= maxCachedQuery {
		t.Fatalf("the query about %d pods is only %d bytes; the test needs one above %d", len(many), len(q.Text), maxCachedQuery)
	}
	onlyTeamA(t, q.Text)
	r.confined.mu.Lock()
	defer r.confined.mu.Unlock()
	if n := len(r.confined.byQuery); n != maxCachedQueries {
		t.Errorf("the cache holds %d queries, want %d", n, maxCachedQueries)
	}
	for k := range r.confined.byQuery {
		if len(k) > maxCachedQuery {
			t.Errorf("the cache holds a %d-byte query", len(k))
		}
	}
}

// TestConfineCacheFollowsNamespace: the cache answers only for the
// namespace and label it was filled for. An external rule with
// namespaced: false renders the same text in every namespace, so a rule
// whose Namespace is set to another one must not send the text confined to
// the first.
func TestConfineCacheFollowsNamespace(t *testing.T) {
	unmatched := queueRule
	unmatched.Resources = config.ResourceMapping{Namespaced: new(false)}
	r := mustConfine(t, unmatched, true)
	if _, err := r.ExternalQuery("queue_messages_ready", "team-a", nil); err != nil {
		t.Fatal(err)
	}
	r.Namespace = "team-b"
	q, err := r.ExternalQuery("queue_messages_ready", "team-b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `sum(queue_messages_ready{namespace="team-b"})`; q.Text != want {
		t.Errorf("query %s, want %s", q.Text, want)
	}
	r.Namespace, r.NamespaceLabel = "team-a", "ns"
	q, err = r.ExternalQuery("queue_messages_ready", "team-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `sum(queue_messages_ready{ns="team-a"})`; q.Text != want {
		t.Errorf("query %s, want %s", q.Text, want)
	}
}
