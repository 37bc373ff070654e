// Package store is Gantry's in-memory series store for the sources Gantry
// scrapes itself — kube-state-metrics (collectors/kubestate) and the
// kubelets' /metrics/cadvisor (collectors/kubelet) — so that rules with
// `source: local` can be answered with PromQL without a Prometheus server.
//
// Scrapers call Ingest with each scrape of a target; providers call Query
// and Series, which evaluate with Prometheus' own engine (promql) over the
// samples held here and never do I/O. Samples are kept for Options.Retention
// per series, Gorilla-encoded as in Prometheus' head block, and a series that
// is absent from a target's newest scrape is marked stale as Prometheus
// marks it, so queries stop returning it at once.
//
// Memory, measured by BenchmarkStoreMemory (cAdvisor-like series, 15s
// scrapes, 10m retention): about 780 bytes per series — its labels (one
// string, ~160 bytes for the kubelet's container labels), its samples at
// ~5 bytes each, and ~400 bytes of series, chunk and index overhead.
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

// Backend is the name the store's errors carry (backend.Error.Backend).
const Backend = "local"

const (
	defaultRetention = 10 * time.Minute
	// lookbackDelta is PromQL's: how far back an instant selector looks for
	// a series' newest sample. Prometheus' default.
	lookbackDelta = 5 * time.Minute
	// maxQueryTime bounds one evaluation when the caller's context allows
	// longer; callers normally pass a tighter deadline.
	maxQueryTime = time.Minute
	// maxQuerySamples is Prometheus' default --query.max-samples.
	maxQuerySamples = 50_000_000
)

// Options configure a Store.
type Options struct {
	// Retention is how long samples are kept per series, counted back from
	// the target's newest scrape; default 10m. Range selectors in queries
	// can look back this far (plus up to half of it, as samples leave in
	// chunks).
	Retention time.Duration
	// Registerer receives the store's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Store holds the series of every target. It is safe for concurrent use:
// each target has its own lock, so scrapes of different targets (nodes)
// ingest in parallel, and queries read while scrapes write.
type Store struct {
	retention time.Duration
	chunkSpan int64 // ms a head chunk covers before it is closed
	engine    *promql.Engine

	mu      sync.RWMutex
	targets map[string]*target

	metrics storeMetrics
}

type storeMetrics struct {
	series       prometheus.Gauge
	targets      prometheus.Gauge
	ingestErrors prometheus.Counter
}

// target is the series of one scrape target, by label hash and by metric
// name (the usual first matcher of a query).
type target struct {
	mu       sync.RWMutex
	gen      uint32 // incremented by every ingested scrape
	byHash   map[uint64]*memSeries
	families map[string]*family
	nseries  int
	// dropped is set by Forget: an Ingest that got the target before must
	// not fill it, as nothing can reach it any more.
	dropped bool
}

// family is the series of one metric name in one target.
type family struct {
	series []*memSeries
}

// New returns an empty store.
func New(opts Options) *Store {
	if opts.Retention <= 0 {
		opts.Retention = defaultRetention
	}
	s := &Store{
		retention: opts.Retention,
		chunkSpan: max(opts.Retention.Milliseconds()/2, 1),
		targets:   map[string]*target{},
		engine: promql.NewEngine(promql.EngineOpts{
			MaxSamples:           maxQuerySamples,
			Timeout:              maxQueryTime,
			LookbackDelta:        lookbackDelta,
			EnableAtModifier:     true,
			EnableNegativeOffset: true,
			// Subqueries without a step use the lookback as their
			// resolution, as with Prometheus' default evaluation
			// interval of 1m.
			NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
		}),
		metrics: storeMetrics{
			series: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "gantry_store_series",
				Help: "Series held by the in-memory store of scraped sources (source: local).",
			}),
			targets: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "gantry_store_targets",
				Help: "Scrape targets with series in the in-memory store.",
			}),
			ingestErrors: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "gantry_store_ingest_errors_total",
				Help: "Scrapes the in-memory store rejected because they did not parse.",
			}),
		},
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.metrics.series, s.metrics.targets, s.metrics.ingestErrors)
	}
	return s
}

// Ingest parses one scrape of target — the Prometheus text format, or
// OpenMetrics or delimited protobuf as contentType (the response's
// Content-Type) says; anything else is read as text — and appends its
// samples. Samples without a timestamp get scrapeTime.
//
// A series of target that is absent from this scrape is marked stale at
// scrapeTime, as Prometheus marks it: instant queries stop returning it, and
// range functions see its samples until the marker. Unlike Prometheus'
// default, this holds for series with explicit timestamps too (cAdvisor's),
// so that a deleted container's series leave at once. Samples older than
// the retention before scrapeTime, and series that have nothing newer, are
// dropped.
//
// A scrape that does not parse is rejected whole: nothing is appended and
// nothing is marked stale, so the previous data stays until the caller
// decides otherwise (Forget).
func (s *Store) Ingest(target string, r io.Reader, contentType string, scrapeTime time.Time) error {
	fams, err := decode(r, contentType)
	if err != nil {
		s.metrics.ingestErrors.Inc()
		return fmt.Errorf("parsing scrape of %s: %w", target, err)
	}
	scrapeT := scrapeTime.UnixMilli()
	mint := scrapeT - s.retention.Milliseconds()

	tg := s.target(target)
	tg.mu.Lock()
	for tg.dropped { // Forget ran in between: take the new target
		tg.mu.Unlock()
		tg = s.target(target)
		tg.mu.Lock()
	}
	defer tg.mu.Unlock()
	before := tg.nseries
	tg.gen++
	a := appender{tg: tg, mint: mint, chunkSpan: s.chunkSpan}
	for _, mf := range fams {
		a.family(mf, scrapeT)
	}
	for _, f := range tg.families {
		// Backwards, as remove swaps the last series into the hole.
		for i := len(f.series) - 1; i >= 0; i-- {
			ms := f.series[i]
			if ms.seen != tg.gen {
				ms.markStale(scrapeT, s.chunkSpan)
			}
			if ms.truncate(mint) {
				tg.remove(ms)
			}
		}
	}
	s.metrics.series.Add(float64(tg.nseries - before))
	return nil
}

// Forget drops every series of target, for a target that is gone (a
// deleted node) or whose data can no longer be trusted.
func (s *Store) Forget(target string) {
	s.mu.Lock()
	tg, ok := s.targets[target]
	delete(s.targets, target)
	s.mu.Unlock()
	if !ok {
		return
	}
	s.metrics.targets.Dec()
	tg.mu.Lock()
	s.metrics.series.Sub(float64(tg.nseries))
	// A query holding the target keeps reading a consistent, now empty
	// target.
	tg.byHash, tg.families, tg.nseries = map[uint64]*memSeries{}, map[string]*family{}, 0
	tg.dropped = true
	tg.mu.Unlock()
}

func (s *Store) target(name string) *target {
	s.mu.RLock()
	tg, ok := s.targets[name]
	s.mu.RUnlock()
	if ok {
		return tg
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if tg, ok = s.targets[name]; !ok {
		tg = &target{byHash: map[uint64]*memSeries{}, families: map[string]*family{}}
		s.targets[name] = tg
		s.metrics.targets.Inc()
	}
	return tg
}

// snapshot returns the current targets, for a query to walk without holding
// the store's lock.
func (s *Store) snapshot() []*target {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*target, 0, len(s.targets))
	for _, tg := range s.targets {
		out = append(out, tg)
	}
	return out
}

// lookup returns the series with lset, or nil.
func (tg *target) lookup(hash uint64, lset labels.Labels) *memSeries {
	for ms := tg.byHash[hash]; ms != nil; ms = ms.next {
		if labels.Equal(ms.lset, lset) {
			return ms
		}
	}
	return nil
}

func (tg *target) add(ms *memSeries, name string) {
	ms.next = tg.byHash[ms.hash]
	tg.byHash[ms.hash] = ms
	f := tg.families[name]
	if f == nil {
		f = &family{}
		tg.families[name] = f
	}
	ms.idx = int32(len(f.series))
	f.series = append(f.series, ms)
	tg.nseries++
}

func (tg *target) remove(ms *memSeries) {
	if head := tg.byHash[ms.hash]; head == ms {
		if ms.next == nil {
			delete(tg.byHash, ms.hash)
		} else {
			tg.byHash[ms.hash] = ms.next
		}
	} else {
		for p := head; p != nil; p = p.next {
			if p.next == ms {
				p.next = ms.next
				break
			}
		}
	}
	name := ms.lset.Get(labels.MetricName)
	f := tg.families[name]
	last := len(f.series) - 1
	f.series[ms.idx] = f.series[last]
	f.series[ms.idx].idx = ms.idx
	f.series[last] = nil
	f.series = f.series[:last]
	if len(f.series) == 0 {
		delete(tg.families, name)
	}
	tg.nseries--
}

// appender turns one scrape's metric families into samples of a target.
// The label sets are built in a reused buffer; only a new series copies
// its labels, once.
type appender struct {
	tg        *target
	mint      int64
	chunkSpan int64
	b         labels.ScratchBuilder
	scratch   labels.Labels
}

func (a *appender) family(mf *dto.MetricFamily, scrapeT int64) {
	name := mf.GetName()
	for _, m := range mf.GetMetric() {
		if m == nil {
			continue
		}
		t := scrapeT
		if m.TimestampMs != nil {
			t = m.GetTimestampMs()
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			if c := m.GetCounter(); c != nil {
				a.sample(name, m, "", "", t, c.GetValue())
			}
		case dto.MetricType_GAUGE:
			if g := m.GetGauge(); g != nil {
				a.sample(name, m, "", "", t, g.GetValue())
			}
		case dto.MetricType_UNTYPED:
			if u := m.GetUntyped(); u != nil {
				a.sample(name, m, "", "", t, u.GetValue())
			}
		case dto.MetricType_SUMMARY:
			sm := m.GetSummary()
			if sm == nil {
				continue
			}
			for _, q := range sm.GetQuantile() {
				a.sample(name, m, model.QuantileLabel, formatFloat(q.GetQuantile()), t, q.GetValue())
			}
			a.sample(name+"_sum", m, "", "", t, sm.GetSampleSum())
			a.sample(name+"_count", m, "", "", t, float64(sm.GetSampleCount()))
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			// Classic buckets only: native histograms have no place in a
			// float-only store, their _sum and _count still do.
			for _, bk := range h.GetBucket() {
				v := float64(bk.GetCumulativeCount())
				if bk.CumulativeCountFloat != nil {
					v = bk.GetCumulativeCountFloat()
				}
				a.sample(name+"_bucket", m, model.BucketLabel, formatFloat(bk.GetUpperBound()), t, v)
			}
			count := float64(h.GetSampleCount())
			if h.SampleCountFloat != nil {
				count = h.GetSampleCountFloat()
			}
			a.sample(name+"_sum", m, "", "", t, h.GetSampleSum())
			a.sample(name+"_count", m, "", "", t, count)
		}
	}
}

// sample appends one sample of metric name with m's labels plus an
// optional extra one (le, quantile).
func (a *appender) sample(name string, m *dto.Metric, extraName, extraValue string, t int64, v float64) {
	a.b.Reset()
	a.b.Add(labels.MetricName, name)
	for _, lp := range m.GetLabel() {
		// An empty value is no label, in the exposition formats as in
		// PromQL.
		if lp.GetValue() != "" {
			a.b.Add(lp.GetName(), lp.GetValue())
		}
	}
	if extraName != "" {
		a.b.Add(extraName, extraValue)
	}
	a.b.Sort()
	a.b.Overwrite(&a.scratch)
	if _, dup := a.scratch.HasDuplicateLabelNames(); dup {
		// Prometheus rejects such a sample too; decode has already
		// refused the usual cases (a repeated label).
		return
	}
	hash := a.scratch.Hash()
	ms := a.tg.lookup(hash, a.scratch)
	if ms == nil {
		if t < a.mint {
			return
		}
		// Copy: scratch's memory is reused by the next sample.
		ms = newMemSeries(a.scratch.Copy(), hash)
		a.tg.add(ms, name)
	}
	ms.seen = a.tg.gen
	ms.append(t, v, a.chunkSpan)
}

// decode reads a whole scrape, so that a broken one changes nothing.
func decode(r io.Reader, contentType string) (fams []*dto.MetricFamily, err error) {
	format := expfmt.ResponseFormat(http.Header{"Content-Type": {contentType}})
	if format == expfmt.FmtUnknown {
		format = expfmt.NewFormat(expfmt.TypeTextPlain)
	}
	if format.FormatType() == expfmt.TypeProtoDelim {
		if r, err = checkedDelimited(r); err != nil {
			return nil, err
		}
	}
	// The parsers are not ours: a panic on some input must fail this
	// scrape, not end the process from a scrape loop.
	defer func() {
		if p := recover(); p != nil {
			fams, err = nil, fmt.Errorf("exposition parser failed: %v", p)
		}
	}()
	dec := expfmt.NewDecoder(r, format)
	for {
		mf := &dto.MetricFamily{}
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			return fams, nil
		}
		if err != nil {
			return nil, err
		}
		if err := checkLabels(mf); err != nil {
			return nil, err
		}
		fams = append(fams, mf)
	}
}

// checkedDelimited reads a delimited protobuf body and checks that every
// message's length prefix fits in what follows: the protobuf decoder
// allocates the announced length up front, so a prefix of 2^60 would
// otherwise panic or exhaust memory before reading a byte of it.
func checkedDelimited(r io.Reader) (io.Reader, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	for rest := b; len(rest) > 0; {
		size, n := binary.Uvarint(rest)
		if n <= 0 || size > uint64(len(rest)-n) {
			return nil, fmt.Errorf("protobuf exposition: message at byte %d: bad length prefix", len(b)-len(rest))
		}
		rest = rest[n+int(size):]
	}
	return bytes.NewReader(b), nil
}

// checkLabels refuses repeated label names and labels the store sets
// itself, which Prometheus refuses in a scrape too.
func checkLabels(mf *dto.MetricFamily) error {
	reserved := ""
	switch mf.GetType() {
	case dto.MetricType_SUMMARY:
		reserved = model.QuantileLabel
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		reserved = model.BucketLabel
	}
	for _, m := range mf.GetMetric() {
		lps := m.GetLabel()
		for i, lp := range lps {
			n := lp.GetName()
			if n == labels.MetricName || (reserved != "" && n == reserved) {
				return fmt.Errorf("metric %q: label %q is reserved", mf.GetName(), n)
			}
			for _, other := range lps[:i] {
				if other.GetName() == n {
					return fmt.Errorf("metric %q: label %q repeated", mf.GetName(), n)
				}
			}
		}
	}
	return nil
}

// formatFloat writes le and quantile values as Prometheus 3 normalizes
// them ("1" becomes "1.0"), so the same bucket has the same series as in a
// Prometheus server.
func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	switch s {
	case "+Inf", "-Inf", "NaN":
		return s
	case "Inf":
		return "+Inf"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '.' || c == 'e' {
			return s
		}
	}
	return s + ".0"
}
