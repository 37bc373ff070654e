package dashboards_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/test/prom"
)

// TestQueriesReturnData runs every panel query and every variable query of
// every dashboard against a real Prometheus holding the fixture series. A
// query that returns nothing, or only NaN, fails: on a real cluster it would
// be an empty panel. Each runs twice: with the variables' sample values, and
// with every multi-value variable at "All" (.+), which also catches a
// multi-value variable matched with = instead of =~. Variable queries must
// offer the sample value, so that the sample values are what Grafana could
// really send.
func TestQueriesReturnData(t *testing.T) {
	srv := prom.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := newFixture(srv)
	f.load(t, ctx)

	client, err := api.NewClient(api.Config{Address: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	papi := promv1.NewAPI(client)

	for _, c := range loadCommitted(t) {
		t.Run(c.name, func(t *testing.T) {
			all := maps.Clone(samples)
			for _, v := range c.b.Templating.List {
				if v.Multi {
					all[v.Name] = v.AllValue
				}
			}
			for _, v := range c.b.Templating.List {
				if v.Type != "query" {
					continue
				}
				t.Run("variable "+v.Name, func(t *testing.T) {
					values, err := variableValues(ctx, papi, v, f.start, f.end)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Contains(values, samples[v.Name]) {
						t.Errorf("%s offers %q, not the sample value %q", v.Query, values, samples[v.Name])
					}
				})
			}
			for _, p := range c.b.allPanels() {
				for _, tg := range p.Targets {
					t.Run(p.Title+" "+tg.RefID, func(t *testing.T) {
						for _, mode := range []struct {
							name   string
							values map[string]string
						}{{"samples", samples}, {"all", all}} {
							expr, err := substituteWith(tg.Expr, mode.values)
							if err != nil {
								t.Fatal(err)
							}
							n, err := instantSeries(ctx, papi, expr, f.end)
							if err != nil {
								t.Errorf("%s: %v\n%s", mode.name, err, expr)
							} else if n == 0 {
								t.Errorf("%s: no data (add the series to fixture_test.go?)\n%s", mode.name, expr)
							}
						}
					})
				}
			}
		})
	}
}

// instantSeries evaluates expr at ts and counts the results that are
// numbers (not NaN).
func instantSeries(ctx context.Context, papi promv1.API, expr string, ts time.Time) (int, error) {
	val, warnings, _, err := papi.Query(ctx, expr, ts)
	if err != nil {
		return 0, err
	}
	if len(warnings) > 0 {
		return 0, fmt.Errorf("warnings: %v", warnings)
	}
	n := 0
	switch v := val.(type) {
	case model.Vector:
		for _, s := range v {
			if !math.IsNaN(float64(s.Value)) {
				n++
			}
		}
	case *model.Scalar:
		if !math.IsNaN(float64(v.Value)) {
			n++
		}
	default:
		return 0, fmt.Errorf("result is a %s, panels want a vector", val.Type())
	}
	return n, nil
}

// variableValues runs a query variable the way Grafana's Prometheus data
// source does: label_values through the label values API, query_result as an
// instant query whose results, rendered as text lines, go through the
// variable's regex.
func variableValues(ctx context.Context, papi promv1.API, v variable, start, end time.Time) ([]string, error) {
	q, err := substitute(v.Query)
	if err != nil {
		return nil, err
	}
	fn, args, err := variableQuery(q)
	if err != nil {
		return nil, err
	}
	var lines []string
	switch {
	case fn == "query_result":
		val, _, _, err := papi.Query(ctx, args[0], end)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
		vec, ok := val.(model.Vector)
		if !ok {
			return nil, fmt.Errorf("%s: a %s, not a vector", q, val.Type())
		}
		for _, s := range vec {
			lines = append(lines, fmt.Sprintf("%s %s %d", s.Metric, s.Value, s.Timestamp))
		}
	default:
		var match []string
		if len(args) == 2 {
			match = []string{args[0]}
		}
		vals, _, _, err := papi.LabelValues(ctx, args[len(args)-1], match, start, end)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
		for _, lv := range vals {
			lines = append(lines, string(lv))
		}
	}
	if v.Regex == "" {
		return lines, nil
	}
	// Grafana takes /pattern/ and keeps the first capture group.
	re, err := regexp.Compile(strings.TrimSuffix(strings.TrimPrefix(v.Regex, "/"), "/"))
	if err != nil {
		return nil, fmt.Errorf("regex %s: %w", v.Regex, err)
	}
	var out []string
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			if len(m) > 1 {
				out = append(out, m[1])
			} else {
				out = append(out, m[0])
			}
		}
	}
	return out, nil
}
