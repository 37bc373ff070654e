package rules_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/prom"
)

// TestRulesOnPrometheus loads the rule files into a real Prometheus and feeds
// it one small data set, shaped like Gantry's, the kube-apiserver's and
// kube-state-metrics' series, under which every alert's condition holds.
// Through the query API every rule's expression must run without error or
// warning and return data; through the rules API Prometheus must report
// every rule healthy and every alert pending or firing.
func TestRulesOnPrometheus(t *testing.T) {
	var cfg strings.Builder
	cfg.WriteString("rule_files:\n")
	for _, f := range ruleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&cfg, "  - %s\n", strconv.Quote(abs))
	}
	// Evaluate the rules every second.
	srv := prom.Start(t, prom.WithScrapeInterval(time.Second), prom.WithConfig(cfg.String()))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	now := time.Now().Truncate(time.Second)
	if err := srv.Write(ctx, firingData(now)); err != nil {
		t.Fatal(err)
	}
	written := time.Now()

	// The server's own evaluation, after it has seen the data.
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending, err := unevaluatedRules(ctx, srv.URL(), written, len(allRules(t)))
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s, rules not evaluated healthy and active since the data arrived:\n%s", strings.Join(pending, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Recording rules read what earlier ones recorded since the data
	// arrived, so query after the server's evaluation.
	at := time.Now()
	for _, r := range allRules(t) {
		name := r.rule.Alert + r.rule.Record
		t.Run(name, func(t *testing.T) {
			res, err := instantQuery(ctx, srv.URL(), r.rule.Expr, at)
			if err != nil {
				t.Fatalf("%s: %v", r.file, err)
			}
			if len(res.Warnings) > 0 || len(res.Infos) > 0 {
				t.Errorf("%s: warnings %q, infos %q", r.file, res.Warnings, res.Infos)
			}
			if len(res.Data.Result) == 0 {
				t.Errorf("%s: no result on data that should satisfy it:\n%s", r.file, r.rule.Expr)
			}
		})
	}
}

// firingData returns ten minutes of samples, every 15s up to now, under which
// every alert's condition holds (its for: aside).
func firingData(now time.Time) []prom.Sample {
	const step = 15 * time.Second
	start := now.Add(-10 * time.Minute)
	var out []prom.Sample
	series := func(labels string, value func(sec float64) float64) {
		l := parseLabels(labels)
		for t := start; !t.After(now); t = t.Add(step) {
			out = append(out, prom.Sample{Labels: l, Value: value(t.Sub(start).Seconds()), Time: t})
		}
	}
	gauge := func(labels string, v float64) { series(labels, func(float64) float64 { return v }) }
	counter := func(labels string, perSecond float64) {
		series(labels, func(sec float64) float64 { return perSecond * sec })
	}
	const g = `job=gantry,namespace=gantry,instance=10.0.0.1:6443`
	const ksm = `job=kube-state-metrics,namespace=shop`

	// GantryDown, GantryAbsent: the only target is down.
	gauge(`__name__=up,`+g, 0)
	// GantryAPIServiceUnavailable.
	gauge(`__name__=aggregator_unavailable_apiservice,job=apiserver,name=v1beta1.custom.metrics.k8s.io`, 1)
	// GantryAPIErrors: half the requests fail.
	counter(`__name__=gantry_requests_total,`+g+`,api=custom.metrics.k8s.io,metric=rps,code=200`, 1)
	counter(`__name__=gantry_requests_total,`+g+`,api=custom.metrics.k8s.io,metric=,code=503`, 1)
	// GantryBackendErrors and GantryBackendSlow: every query times out
	// after 2.5-5s.
	counter(`__name__=gantry_backend_errors_total,`+g+`,backend=prometheus,call=query,reason=timeout`, 1)
	counter(`__name__=gantry_backend_request_duration_seconds_count,`+g+`,backend=prometheus,call=query,outcome=error`, 1)
	gauge(`__name__=gantry_backend_request_duration_seconds_bucket,`+g+`,backend=prometheus,call=query,outcome=error,le=2.5`, 0)
	counter(`__name__=gantry_backend_request_duration_seconds_bucket,`+g+`,backend=prometheus,call=query,outcome=error,le=5`, 1)
	counter(`__name__=gantry_backend_request_duration_seconds_bucket,`+g+`,backend=prometheus,call=query,outcome=error,le=+Inf`, 1)
	// GantryRelistFailing: one failure a minute.
	counter(`__name__=gantry_discovery_relist_failures_total,`+g+`,rule=rules[0] (http_requests)`, 1.0/60)
	// GantryDiscoveryStale: the last complete discovery was an hour ago.
	gauge(`__name__=gantry_discovery_last_success_timestamp_seconds,`+g, float64(now.Add(-time.Hour).Unix()))
	// GantryNoMetricsDiscovered.
	gauge(`__name__=gantry_discovery_metrics,`+g+`,api=custom`, 0)
	gauge(`__name__=gantry_discovery_metrics,`+g+`,api=external`, 0)
	// GantryMetricRuleNotReady: MetricRule team-a/web, as a ServiceMonitor
	// scrape labels it.
	gauge(`__name__=gantry_metricrule_ready,`+g+`,exported_namespace=team-a,name=web`, 0)

	// HPAMaxedOut, HPAReplicasMismatch, HPAMetricsUnavailable: HPA web
	// at its maximum of 10, wanting 12, without metrics.
	gauge(`__name__=kube_horizontalpodautoscaler_status_current_replicas,`+ksm+`,horizontalpodautoscaler=web`, 10)
	gauge(`__name__=kube_horizontalpodautoscaler_status_desired_replicas,`+ksm+`,horizontalpodautoscaler=web`, 12)
	gauge(`__name__=kube_horizontalpodautoscaler_spec_max_replicas,`+ksm+`,horizontalpodautoscaler=web`, 10)
	gauge(`__name__=kube_horizontalpodautoscaler_spec_min_replicas,`+ksm+`,horizontalpodautoscaler=web`, 2)
	gauge(`__name__=kube_horizontalpodautoscaler_status_condition,`+ksm+`,horizontalpodautoscaler=web,condition=ScalingActive,status=false`, 1)
	gauge(`__name__=kube_horizontalpodautoscaler_status_condition,`+ksm+`,horizontalpodautoscaler=web,condition=ScalingActive,status=true`, 0)

	// VPARecommendationFarFromRequests: Deployment web's pod requests 0.1
	// CPU, its VPA recommends 0.5.
	gauge(`__name__=kube_pod_owner,`+ksm+`,pod=web-6d4cf56db6-x7k2p,owner_kind=ReplicaSet,owner_name=web-6d4cf56db6,owner_is_controller=true`, 1)
	gauge(`__name__=kube_replicaset_owner,`+ksm+`,replicaset=web-6d4cf56db6,owner_kind=Deployment,owner_name=web,owner_is_controller=true`, 1)
	gauge(`__name__=kube_pod_container_resource_requests,`+ksm+`,pod=web-6d4cf56db6-x7k2p,container=app,node=node-1,resource=cpu,unit=core`, 0.1)
	gauge(`__name__=kube_customresource_verticalpodautoscaler_status_recommendation_containerrecommendations_target,`+ksm+
		`,customresource_group=autoscaling.k8s.io,customresource_kind=VerticalPodAutoscaler,customresource_version=v1`+
		`,verticalpodautoscaler=web,target_api_version=apps/v1,target_kind=Deployment,target_name=web,container=app,resource=cpu,unit=core`, 0.5)
	return out
}

// parseLabels reads "a=1,b=2"; values hold no commas.
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

type queryResponse struct {
	Status    string   `json:"status"`
	ErrorType string   `json:"errorType"`
	Error     string   `json:"error"`
	Warnings  []string `json:"warnings"`
	Infos     []string `json:"infos"`
	Data      struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	} `json:"data"`
}

func instantQuery(ctx context.Context, base, expr string, at time.Time) (*queryResponse, error) {
	q := url.Values{"query": {expr}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)}}
	var res queryResponse
	if err := getJSON(ctx, base+"/api/v1/query?"+q.Encode(), &res); err != nil {
		return nil, err
	}
	if res.Status != "success" {
		return nil, fmt.Errorf("query failed: %s: %s", res.ErrorType, res.Error)
	}
	if res.Data.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s, want vector", res.Data.ResultType)
	}
	return &res, nil
}

// unevaluatedRules lists the rules Prometheus has not yet evaluated since
// `since`, or found unhealthy, or (for alerts) found inactive; want is how
// many rules it should have loaded.
func unevaluatedRules(ctx context.Context, base string, since time.Time, want int) ([]string, error) {
	var res struct {
		Status string `json:"status"`
		Data   struct {
			Groups []struct {
				Name  string `json:"name"`
				File  string `json:"file"`
				Rules []struct {
					Name           string    `json:"name"`
					Type           string    `json:"type"`
					Health         string    `json:"health"`
					LastError      string    `json:"lastError"`
					State          string    `json:"state"`
					LastEvaluation time.Time `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := getJSON(ctx, base+"/api/v1/rules", &res); err != nil {
		return nil, err
	}
	var out []string
	n := 0
	for _, g := range res.Data.Groups {
		for _, r := range g.Rules {
			n++
			where := fmt.Sprintf("%s: group %s: %s", filepath.Base(g.File), g.Name, r.Name)
			switch {
			case r.LastEvaluation.Before(since):
				out = append(out, where+": not evaluated yet")
			case r.Health != "ok":
				out = append(out, fmt.Sprintf("%s: health %s: %s", where, r.Health, r.LastError))
			case r.Type == "alerting" && r.State == "inactive":
				out = append(out, where+": inactive")
			}
		}
	}
	if n != want {
		out = append(out, fmt.Sprintf("%d rules loaded, want %d", n, want))
	}
	return out, nil
}

func getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %s: %w", u, resp.Status, err)
	}
	return nil
}
