package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"github.com/gantry-dev/gantry/test/toolbin"
	"strings"
	"testing"
)

// TestQuick runs every scenario at a tiny scale on the real stack, so that
// the harness cannot rot. It asserts that each produced numbers, not what
// they are: no test asserts a wall-clock figure.
func TestQuick(t *testing.T) {
	toolbin.Require(t, "gantry", "prometheus", "promtool", "etcd", "kube-apiserver", "kube-controller-manager", "kwok")
	var out bytes.Buffer
	args := []string{
		"-workdir", t.TempDir(), "-timeout", "4m", "-relist", "5s", "-value-cache-ttl", "5s",
		"-pods", "20", "-requests", "10", "-idle-window", "1s",
		"-hpas", "4", "-hpa-pods", "1", "-hpa-duration", "3s", "-hpa-poll", "1s",
		"-soak", "6s", "-soak-rps", "10", "-soak-burst-every", "3s", "-soak-burst-for", "1s", "-soak-window", "3s", "-soak-targets", "2",
		"-discovery", "2000",
		"-metricrules", "6", "-metricrules-namespaces", "2", "-metricrules-sample", "2", "-metricrules-idle", "1s",
		"-explain", "3", "-explain-pods", "2",
	}
	code := run(args, &out)
	t.Logf("bench output:\n%s", out.String())
	if code != 0 {
		t.Fatalf("bench exited with %d", code)
	}
	got := map[string]result{}
	clients := map[string]result{}
	setups := map[string]result{}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("JSON line %q: %v", line, err)
		}
		got[r.Scenario] = r
		if r.Scenario == "pods" {
			clients[r.Client] = r
		}
		if r.MetricRules != nil {
			setups[r.MetricRules.Setup] = r
		}
	}
	// Each client's block is its own result, and its wire is what that
	// client is meant to be: the HPA controller's protobuf without gzip
	// over HTTP/2, JSON with and without gzip.
	for _, c := range []struct {
		name, contentType string
		gzip              bool
	}{
		{clientHPA, "application/vnd.kubernetes.protobuf", false},
		{clientJSON, "application/json", true},
		{clientJSONIdentity, "application/json", false},
	} {
		r, ok := clients[c.name]
		switch {
		case !ok:
			t.Errorf("no pods result for client %s", c.name)
		case r.Wire == nil:
			t.Errorf("pods result for client %s without its wire", c.name)
		case r.Wire.Proto != "HTTP/2.0" || r.Wire.ContentType != c.contentType || (r.Wire.AcceptEncoding == "gzip") != c.gzip || r.Wire.BytesPerAnswer <= 0:
			t.Errorf("client %s: wire %+v, want HTTP/2.0, %s, gzip asked %v", c.name, *r.Wire, c.contentType, c.gzip)
		}
	}
	// The MetricRules scenario runs both setups on the same rules, each
	// served to its fleet; only MetricRules are applied one at a time.
	for _, setup := range []string{setupCluster, setupMetricRules} {
		r, ok := setups[setup]
		switch {
		case !ok:
			t.Errorf("no metricrules result for setup %s", setup)
		case r.Requests == 0 || r.Errors != 0 || r.MetricRules.Rules != 6 || r.MetricRules.IdleWindowSeconds <= 0 || r.MetricRules.ServedSeconds <= 0:
			t.Errorf("metricrules %s without its figures: %+v %+v", setup, r, *r.MetricRules)
		case (setup == setupMetricRules) != (r.MetricRules.ApplyToServed != nil):
			t.Errorf("metricrules %s: apply → served %+v", setup, r.MetricRules.ApplyToServed)
		}
	}
	if r, ok := got["explain"]; !ok || r.Explain == nil || r.Explain.Calls != 3 || r.Explain.Errors != 0 || !r.Explain.ValueCacheUntouched {
		t.Errorf("explain result without its figures, or the value cache touched: %+v", r)
	}
	for _, name := range []string{"pods", "fleet", "soak", "discovery"} {
		r, ok := got[name]
		if !ok {
			t.Errorf("no %s result", name)
			continue
		}
		switch name {
		case "discovery":
			d := r.Discovery
			if d == nil || d.Series != 2000 || d.FirstListSeconds <= 0 || d.Metrics != 2*discoveryNames || d.RSSMiB <= 0 || d.RelistSeconds <= 0 {
				t.Errorf("discovery result without its figures: %+v", d)
			}
		case "soak":
			if r.Soak == nil || len(r.Soak.Windows) == 0 || r.Requests == 0 || r.Soak.Windows[0].RSSMiB <= 0 {
				t.Errorf("soak result without its figures: %+v %+v", r, r.Soak)
			}
		default:
			if r.Requests == 0 || r.Gantry.P99 <= 0 || r.GantryRSSMiB <= 0 {
				t.Errorf("%s result without its figures: %+v", name, r)
			}
		}
	}
}
