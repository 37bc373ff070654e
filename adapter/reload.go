package adapter

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// compiledConfig is a config file's rules, compiled and ready to serve.
type compiledConfig struct {
	custom, external []*rules.Rule
	resource         *rules.ResourceRules // nil: the file has no resourceRules
}

// compileConfig compiles a parsed config's rules. The error lists every
// problem, each naming file, rule and field.
func compileConfig(cfg *config.Config, file string, mapper apimeta.RESTMapper) (*compiledConfig, error) {
	custom, external, resource, err := rules.CompileConfig(cfg, file, mapper)
	if err != nil {
		return nil, err
	}
	return &compiledConfig{custom: custom, external: external, resource: resource}, nil
}

// parseAndCompile is what a reload does with a changed file's content: it
// parses it once, checks the parsed config with check (nil: no check) and
// compiles it.
func parseAndCompile(data []byte, file string, mapper apimeta.RESTMapper, check func(*config.Config) error) (*compiledConfig, error) {
	cfg, err := config.Parse(data, file)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(cfg); err != nil {
			return nil, err
		}
	}
	return compileConfig(cfg, file, mapper)
}

// configReloader checks the config file every interval and, when its
// content changed, compiles it and hands it to apply. A file that does not
// read, parse or compile is rejected: the error is logged, the failure
// counted, and the config in use stays. The content is compared, not the
// modification time, so a ConfigMap volume's symlink swap and an editor's
// rename both count, and a rejected file is not tried again until it
// changes.
type configReloader struct {
	file     string
	interval time.Duration
	clock    clock.WithTicker
	compile  func(data []byte) (*compiledConfig, error)
	apply    func(*compiledConfig)
	// rejected, when set, hears why a changed file was not applied
	// (GantryStatus shows it).
	rejected func(error)

	last [sha256.Size]byte // content last tried, good or bad

	reloads     *prometheus.CounterVec
	lastOK      prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// newConfigReloader returns a reloader for file, whose content in use is
// initial. reg takes its metrics.
func newConfigReloader(file string, initial []byte, interval time.Duration, clk clock.WithTicker,
	compile func([]byte) (*compiledConfig, error), apply func(*compiledConfig), reg prometheus.Registerer) *configReloader {
	r := &configReloader{
		file:     file,
		interval: interval,
		clock:    clk,
		compile:  compile,
		apply:    apply,
		last:     sha256.Sum256(initial),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_config_reloads_total",
			Help: "Changes of the config file that were applied (success) or rejected (failure).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gantry_config_last_reload_successful",
			Help: "1 when the config file's current content is the config in use, 0 when its last change was rejected.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gantry_config_last_reload_success_timestamp_seconds",
			Help: "Unix time at which the config in use was loaded.",
		}),
	}
	// Both results show from the start, so a rate over either is defined.
	r.reloads.WithLabelValues("success")
	r.reloads.WithLabelValues("failure")
	r.lastOK.Set(1)
	r.lastSuccess.Set(float64(clk.Now().Unix()))
	if reg != nil {
		reg.MustRegister(r.reloads, r.lastOK, r.lastSuccess)
	}
	return r
}

// Run checks the file every interval until ctx is cancelled, and returns
// then.
func (r *configReloader) Run(ctx context.Context) {
	t := r.clock.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		// apply logs what a good change did.
		if _, err := r.check(); err != nil {
			klog.ErrorS(err, "config change rejected; the last good config stays in use", "config", r.file)
		}
	}
}

// check reads the file once. It reports whether the content changed since
// the last check, and the error that made a changed file be rejected.
func (r *configReloader) check() (changed bool, err error) {
	data, err := os.ReadFile(r.file)
	if err != nil {
		// A missing or unreadable file is a change too, rejected once
		// until the error or the file changes.
		sum := sha256.Sum256([]byte("read error\x00" + err.Error()))
		if sum == r.last {
			return false, nil
		}
		r.last = sum
		err = fmt.Errorf("reading config: %w", err)
		r.fail(err)
		return true, err
	}
	sum := sha256.Sum256(data)
	if sum == r.last {
		return false, nil
	}
	r.last = sum
	c, err := r.compile(data)
	if err != nil {
		r.fail(err)
		return true, err
	}
	r.apply(c)
	r.reloads.WithLabelValues("success").Inc()
	r.lastOK.Set(1)
	r.lastSuccess.Set(float64(r.clock.Now().Unix()))
	return true, nil
}

func (r *configReloader) fail(err error) {
	r.reloads.WithLabelValues("failure").Inc()
	r.lastOK.Set(0)
	if r.rejected != nil {
		r.rejected(err)
	}
}

// configState is what GantryStatus says of the config: the rules in use,
// when they were loaded, and why the file's last change was rejected.
type configState struct {
	custom, external int
	loaded           time.Time
	rejected         string
}
