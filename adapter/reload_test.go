package adapter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/gantry-dev/gantry/adapter/checkconfig"
	"github.com/gantry-dev/gantry/adapter/config"
)

const (
	reloadGood = `rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
`
	// reloadGood plus an external rule.
	reloadMore = reloadGood + `externalRules:
- seriesQuery: '{__name__="queue_depth",queue!=""}'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
`
	reloadUnknownField = `rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
`
	reloadBadQuery = `rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m]) by (<<.GroupBy>>)'
`
	reloadBadResource = `rules:
- seriesQuery: 'widget_spins_total{namespace!="",widget!=""}'
  resources:
    overrides:
      widget: {resource: "widget"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
`
)

// configMapDir lays a config file out as a ConfigMap volume does: the file
// is a symlink through ..data to a timestamped directory, and an update
// writes a new directory and swaps ..data atomically.
type configMapDir struct {
	t   *testing.T
	dir string
	n   int
}

func newConfigMapDir(t *testing.T) *configMapDir {
	d := &configMapDir{t: t, dir: t.TempDir()}
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), d.path()); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *configMapDir) path() string { return filepath.Join(d.dir, "config.yaml") }

// write publishes content; remove publishes a volume without the file.
func (d *configMapDir) write(content string) { d.publish(&content) }
func (d *configMapDir) remove()              { d.publish(nil) }

func (d *configMapDir) publish(content *string) {
	d.t.Helper()
	d.n++
	ts := fmt.Sprintf("..2026_01_02_03_04_%02d.%d", d.n, d.n)
	if err := os.Mkdir(filepath.Join(d.dir, ts), 0o755); err != nil {
		d.t.Fatal(err)
	}
	if content != nil {
		if err := os.WriteFile(filepath.Join(d.dir, ts, "config.yaml"), []byte(*content), 0o644); err != nil {
			d.t.Fatal(err)
		}
	}
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		d.t.Fatal(err)
	}
}

// TestConfigReload walks a reloader through changes of a ConfigMap-style
// file: each valid change is applied once, each broken one is rejected with
// an error naming file, rule and field, counted, and not applied, and a
// rejected content is not tried again until the file changes.
func TestConfigReload(t *testing.T) {
	cm := newConfigMapDir(t)
	file := cm.path()
	cm.write(reloadGood)
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var applied []*compiledConfig
	compile := func(data []byte) (*compiledConfig, error) {
		return parseAndCompile(data, file, checkconfig.OfflineMapper(), nil)
	}
	reg := prometheus.NewRegistry()
	r := newConfigReloader(file, []byte(reloadGood), time.Second, clk, compile, func(c *compiledConfig) { applied = append(applied, c) }, reg)
	var rejected []error
	r.rejected = func(err error) { rejected = append(rejected, err) }

	type outcome struct {
		Changed  bool
		Applied  int    // configs applied so far
		External int    // external rules of the last applied config
		Success  int    // gantry_config_reloads_total{result="success"}
		Failure  int    // gantry_config_reloads_total{result="failure"}
		LastOK   int    // gantry_config_last_reload_successful
		LastAt   int64  // gantry_config_last_reload_success_timestamp_seconds, seconds after the start
		Err      string // substrings of the error, separated by "|"
	}
	start := clk.Now()
	steps := []struct {
		name string
		do   func()
		want outcome
	}{
		{"unchanged file", func() {}, outcome{LastOK: 1}},
		{"valid change is applied", func() { cm.write(reloadMore) },
			outcome{Changed: true, Applied: 1, External: 1, Success: 1, LastOK: 1, LastAt: 10}},
		{"unknown field is rejected, naming file, line, rule and field", func() { cm.write(reloadUnknownField) },
			outcome{Changed: true, Applied: 1, External: 1, Success: 1, Failure: 1, LastAt: 10,
				Err: file + `:4: rules[0] (http_requests_total): unknown field "metricQuery", did you mean "metricsQuery"?`}},
		{"the same broken content is not tried again", func() {},
			outcome{Applied: 1, External: 1, Success: 1, Failure: 1, LastAt: 10}},
		{"a query that does not parse is rejected", func() { cm.write(reloadBadQuery) },
			outcome{Changed: true, Applied: 1, External: 1, Success: 1, Failure: 2, LastAt: 10,
				Err: file + ": rules[0] (http_requests_total): metricsQuery: rendered query does not parse"}},
		{"a resource Kubernetes does not know is rejected", func() { cm.write(reloadBadResource) },
			outcome{Changed: true, Applied: 1, External: 1, Success: 1, Failure: 3, LastAt: 10,
				Err: file + `: rules[0] (widget_spins_total): resources: overrides.widget`}},
		{"a missing file is rejected once", func() { cm.remove() },
			outcome{Changed: true, Applied: 1, External: 1, Success: 1, Failure: 4, LastAt: 10, Err: "reading config|no such file"}},
		{"and not again while it stays missing", func() {},
			outcome{Applied: 1, External: 1, Success: 1, Failure: 4, LastAt: 10}},
		{"a fixed file is applied", func() { cm.write(reloadGood) },
			outcome{Changed: true, Applied: 2, Success: 2, Failure: 4, LastOK: 1, LastAt: 80}},
	}
	for i, s := range steps {
		clk.SetTime(start.Add(time.Duration(i*10) * time.Second))
		s.do()
		changed, err := r.check()
		got := outcome{
			Changed: changed,
			Applied: len(applied),
			Success: int(testutil.ToFloat64(r.reloads.WithLabelValues("success"))),
			Failure: int(testutil.ToFloat64(r.reloads.WithLabelValues("failure"))),
			LastOK:  int(testutil.ToFloat64(r.lastOK)),
			LastAt:  int64(testutil.ToFloat64(r.lastSuccess)) - start.Unix(),
		}
		if len(applied) > 0 {
			got.External = len(applied[len(applied)-1].external)
		}
		if err != nil && (len(rejected) == 0 || rejected[len(rejected)-1] != err) {
			t.Errorf("step %d, %s: the rejection %v was not handed to rejected (GantryStatus)", i, s.name, err)
		}
		if err != nil {
			got.Err = s.want.Err
			for _, sub := range strings.Split(s.want.Err, "|") {
				if !strings.Contains(err.Error(), sub) {
					got.Err = err.Error()
				}
			}
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("step %d, %s (-want +got):\n%s", i, s.name, diff)
		}
	}
	if len(rejected) != 4 {
		t.Errorf("rejected heard %d rejections, want 4", len(rejected))
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP gantry_config_reloads_total Changes of the config file that were applied (success) or rejected (failure).
# TYPE gantry_config_reloads_total counter
gantry_config_reloads_total{result="failure"} 4
gantry_config_reloads_total{result="success"} 2
# HELP gantry_config_last_reload_successful 1 when the config file's current content is the config in use, 0 when its last change was rejected.
# TYPE gantry_config_last_reload_successful gauge
gantry_config_last_reload_successful 1
`), "gantry_config_reloads_total", "gantry_config_last_reload_successful"); err != nil {
		t.Error(err)
	}
}

// TestConfigReloaderRun checks that Run checks the file on each tick of
// its clock, not before, and returns when its context is cancelled.
func TestConfigReloaderRun(t *testing.T) {
	cm := newConfigMapDir(t)
	file := cm.path()
	cm.write(reloadGood)
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	applied := make(chan *compiledConfig, 4)
	compile := func(data []byte) (*compiledConfig, error) {
		return parseAndCompile(data, file, checkconfig.OfflineMapper(), nil)
	}
	r := newConfigReloader(file, []byte(reloadGood), time.Second, clk, compile, func(c *compiledConfig) { applied <- c }, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	cm.write(reloadMore)
	// Wait for Run's ticker before stepping the clock past it.
	deadline := time.Now().Add(10 * time.Second)
	for !clk.HasWaiters() {
		if time.Now().After(deadline) {
			t.Fatal("Run never waited on its ticker")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-applied:
		t.Fatal("applied before the first tick")
	default:
	}
	clk.Step(time.Second)
	select {
	case c := <-applied:
		if len(c.external) != 1 {
			t.Errorf("applied config has %d external rules, want 1", len(c.external))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the change was not applied after a tick")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// TestParseAndCompile checks what a reload does with a changed file: the
// check sees the config parsed from the content, and each of parse, check
// and compile rejects the file with its own error.
func TestParseAndCompile(t *testing.T) {
	errBackend := errors.New("config.yaml: rules[0] (http_requests_total): metricsQuery: needs --prometheus-url (or source: local)")
	tests := []struct {
		name       string
		content    string
		checkErr   error
		wantChecks int
		wantRules  int
		wantErr    string
	}{
		{name: "good file: checked once, compiled", content: reloadGood, wantChecks: 1, wantRules: 1},
		{name: "unknown field: rejected by the parse, not checked", content: reloadUnknownField, wantErr: "metricQuery"},
		{name: "missing backend: rejected by the check", content: reloadGood, checkErr: errBackend, wantChecks: 1, wantErr: "needs --prometheus-url"},
		{name: "broken query: rejected by the parse, not checked", content: reloadBadQuery, wantErr: "metricsQuery"},
		{name: "unknown resource: checked, rejected by the compile", content: reloadBadResource, wantChecks: 1, wantErr: "widget"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checks := 0
			check := func(cfg *config.Config) error {
				checks++
				if got := len(cfg.Rules); got != 1 {
					t.Errorf("check saw %d rules, want 1", got)
				}
				return tc.checkErr
			}
			c, err := parseAndCompile([]byte(tc.content), "config.yaml", checkconfig.OfflineMapper(), check)
			if checks != tc.wantChecks {
				t.Errorf("check called %d times, want %d", checks, tc.wantChecks)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(c.custom); got != tc.wantRules {
				t.Errorf("compiled %d rules, want %d", got, tc.wantRules)
			}
		})
	}
}

// TestBackendsCheck: rules are checked against the backends Gantry runs
// with; a rule naming a backend of the file is the file's to validate; a
// reload may not change the backends section, which is built at start.
func TestBackendsCheck(t *testing.T) {
	const thanos = "backends: [{name: thanos, type: prometheus, url: 'http://127.0.0.1:1'}]\n"
	const rule = `rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  backend: thanos
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
`
	start, err := config.Parse([]byte(thanos+rule), "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBackends(&Options{BackendTimeout: time.Second}, start, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.queriers()["thanos"]; !ok {
		t.Fatalf("no querier for the named backend: %v", b.queriers())
	}
	if err := b.check("config.yaml", start, false); err != nil {
		t.Errorf("the config Gantry started with: %v", err)
	}
	changed, err := config.Parse([]byte(strings.Replace(thanos, "127.0.0.1:1", "127.0.0.1:2", 1)+rule), "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.check("config.yaml", changed, false); err == nil || !strings.Contains(err.Error(), "backends: changed since Gantry started") {
		t.Errorf("a reload that moves a backend: err = %v, want it refused until a restart", err)
	}
}
