package stack

import (
	"context"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/test/prom"
)

// DefaultRules is the Gantry config of the e2e tests and the demo, in
// prometheus-adapter's format: the walkthrough's per-pod request rate, a
// Service's request rate (template mapping), a queue depth as an external
// metric, and cAdvisor-shaped resource rules. Windows are short so that the
// HPA reacts within seconds.
const DefaultRules = `# Gantry rules for the local stack (prometheus-adapter format).
rules:
# Pods metric: requests per second of each pod.
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^(.*)_total$"
    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[30s])) by (<<.GroupBy>>)'
# Object metric: requests per second through a Service.
- seriesQuery: 'ingress_requests_total{namespace!="",service!=""}'
  resources:
    template: "<<.Resource>>"
  name:
    matches: "^(.*)_total$"
    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[30s])) by (<<.GroupBy>>)'
externalRules:
# External metric: messages waiting in a queue, picked by metricSelector.
- seriesQuery: '{__name__="queue_depth",queue!=""}'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
  resources:
    overrides:
      namespace: {resource: "namespace"}
resourceRules:
  cpu:
    containerQuery: 'sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=""}[30s])) by (<<.GroupBy>>)'
    nodeQuery: 'sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,id="/"}[30s])) by (<<.GroupBy>>)'
    resources:
      overrides:
        node: {resource: "node"}
        namespace: {resource: "namespace"}
        pod: {resource: "pod"}
    containerLabel: container
  memory:
    containerQuery: 'sum(container_memory_working_set_bytes{<<.LabelMatchers>>,container!=""}) by (<<.GroupBy>>)'
    nodeQuery: 'sum(container_memory_working_set_bytes{<<.LabelMatchers>>,id="/"}) by (<<.GroupBy>>)'
    resources:
      overrides:
        node: {resource: "node"}
        namespace: {resource: "namespace"}
        pod: {resource: "pod"}
    containerLabel: container
  window: 30s
`

// Feeder writes live series to Prometheus: counters growing at a set rate
// and gauges at a set value, one sample per series every step, so values
// can change while an HPA watches.
type Feeder struct {
	write func(context.Context, []prom.Sample) error
	step  time.Duration

	mu     sync.Mutex
	series map[string]*fed
	last   time.Time
}

type fed struct {
	labels  map[string]string
	counter bool
	value   float64 // gauge value or counter rate per second
	total   float64 // counter value at last
	last    time.Time
	backlog []prom.Sample
}

// NewFeeder returns a feeder writing to p every step; call Run.
func NewFeeder(p *prom.Server, step time.Duration) *Feeder {
	return NewFeederTo(p.Write, step)
}

// NewFeederTo returns a feeder handing its samples to write every step:
// a prom.Writer's Write for a tenant of Cortex or Thanos receive, or
// several servers' at once.
func NewFeederTo(write func(context.Context, []prom.Sample) error, step time.Duration) *Feeder {
	return &Feeder{write: write, step: step, series: map[string]*fed{}}
}

func key(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + labels[k] + "\x00")
	}
	return b.String()
}

// SetRate makes a counter grow at perSecond from now on. A new counter gets
// two minutes of history at that rate, so rate() answers at once.
func (f *Feeder) SetRate(labels map[string]string, perSecond float64) {
	f.set(labels, true, perSecond)
}

// SetGauge sets a gauge's value from now on.
func (f *Feeder) SetGauge(labels map[string]string, v float64) {
	f.set(labels, false, v)
}

func (f *Feeder) set(labels map[string]string, counter bool, v float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key(labels)
	s, ok := f.series[k]
	now := time.Now()
	if !ok {
		s = &fed{labels: maps.Clone(labels), counter: counter, last: now}
		if counter {
			// History, oldest first, ending before the next tick.
			start := now.Add(-2 * time.Minute)
			for ts := start; ts.Before(now); ts = ts.Add(f.step) {
				s.backlog = append(s.backlog, prom.Sample{Labels: s.labels, Value: v * ts.Sub(start).Seconds(), Time: ts})
			}
			s.total = v * now.Sub(start).Seconds()
		}
		f.series[k] = s
	} else if counter {
		s.total += s.value * now.Sub(s.last).Seconds()
		s.last = now
	}
	s.value = v
}

// Remove stops writing a series (Prometheus keeps answering its last value
// for its lookback window).
func (f *Feeder) Remove(labels map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.series, key(labels))
}

// Flush writes one sample of every series now.
func (f *Feeder) Flush(ctx context.Context) error {
	f.mu.Lock()
	now := time.Now()
	var samples []prom.Sample
	keys := make([]string, 0, len(f.series))
	for k := range f.series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s := f.series[k]
		samples = append(samples, s.backlog...)
		s.backlog = nil
		if s.counter {
			s.total += s.value * now.Sub(s.last).Seconds()
			s.last = now
			samples = append(samples, prom.Sample{Labels: s.labels, Value: s.total, Time: now})
		} else {
			samples = append(samples, prom.Sample{Labels: s.labels, Value: s.value, Time: now})
		}
	}
	f.mu.Unlock()
	if len(samples) == 0 {
		return nil
	}
	return f.write(ctx, samples)
}

// Run flushes every step until ctx ends. Errors are passed to onErr (may be
// nil) and writing goes on.
func (f *Feeder) Run(ctx context.Context, onErr func(error)) {
	t := time.NewTicker(f.step)
	defer t.Stop()
	for {
		if err := f.Flush(ctx); err != nil && ctx.Err() == nil && onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
