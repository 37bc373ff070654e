package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/gantry-dev/gantry/collectors/backend"
)

// Query evaluates an instant PromQL query at ts with Prometheus' engine
// over the store's series. A scalar result comes back as one sample
// without labels; samples whose value is NaN or ±Inf are left out, as the
// Prometheus backend leaves them out. Errors are
// *backend.Error with Backend "local" and Reason bad_query (the
// query does not parse, or does not return an instant vector or scalar),
// timeout (ctx ended, or the evaluation ran past a minute) or
// backend_error (for example too many samples).
func (s *Store) Query(ctx context.Context, query string, ts time.Time) (model.Vector, error) {
	q, err := s.engine.NewInstantQuery(ctx, queryable{s}, nil, query, ts)
	if err != nil {
		return nil, classify(err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, classify(res.Err)
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		out := make(model.Vector, 0, len(v))
		for _, smp := range v {
			if smp.H != nil || math.IsNaN(smp.F) || math.IsInf(smp.F, 0) {
				continue
			}
			out = append(out, &model.Sample{Metric: toMetric(smp.Metric), Value: model.SampleValue(smp.F), Timestamp: model.Time(smp.T)})
		}
		return out, nil
	case promql.Scalar:
		if math.IsNaN(v.V) || math.IsInf(v.V, 0) {
			return model.Vector{}, nil
		}
		return model.Vector{{Metric: model.Metric{}, Value: model.SampleValue(v.V), Timestamp: model.Time(v.T)}}, nil
	default:
		return nil, &backend.Error{Backend: Backend, Reason: "bad_query",
			Err: fmt.Errorf("query returns a %s, expected an instant vector or scalar", res.Value.Type())}
	}
}

// Series lists the label sets of the series that match any of matchers
// (series selectors such as `kube_pod_info{namespace="shop"}`) and have a
// sample in [start, end], like Prometheus' /api/v1/series. Stale markers
// count as samples there too.
func (s *Store) Series(ctx context.Context, matchers []string, start, end time.Time) ([]model.LabelSet, error) {
	if len(matchers) == 0 {
		return nil, &backend.Error{Backend: Backend, Reason: "bad_query", Err: errors.New("no series selector given")}
	}
	sets := make([][]*labels.Matcher, 0, len(matchers))
	p := parser.NewParser(parser.Options{})
	for _, m := range matchers {
		ms, err := p.ParseMetricSelector(m)
		if err != nil {
			return nil, classify(err)
		}
		sets = append(sets, ms)
	}
	mint, maxt := start.UnixMilli(), end.UnixMilli()
	seen := map[string]struct{}{}
	var out []model.LabelSet
	for _, tg := range s.snapshot() {
		if err := ctx.Err(); err != nil {
			return nil, classify(err)
		}
		tg.mu.RLock()
		for _, ms := range sets {
			tg.match(ms, func(m *memSeries) {
				if m.lastT < mint || m.firstT() > maxt {
					return
				}
				key := m.lset.String()
				if _, dup := seen[key]; dup {
					return
				}
				seen[key] = struct{}{}
				out = append(out, toLabelSet(m.lset))
			})
		}
		tg.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b model.LabelSet) int { return strings.Compare(a.String(), b.String()) })
	return out, nil
}

// firstT is the timestamp of the oldest sample held.
func (s *memSeries) firstT() int64 {
	if len(s.closed) > 0 {
		var c chunkenc.XORChunk
		c.Reset(s.closed[0].data)
		if it := c.Iterator(nil); it.Next() == chunkenc.ValFloat {
			return it.AtT()
		}
	}
	if s.head != nil {
		return s.headMint
	}
	return math.MaxInt64
}

// match calls fn for every series of tg that all of ms match. It narrows
// by an equality matcher on the metric name when there is one. tg must be
// locked.
func (tg *target) match(ms []*labels.Matcher, fn func(*memSeries)) {
	each := func(f *family) {
		for _, m := range f.series {
			if matchesAll(ms, m.lset) {
				fn(m)
			}
		}
	}
	for _, m := range ms {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			if f := tg.families[m.Value]; f != nil {
				each(f)
			}
			return
		}
	}
	for _, f := range tg.families {
		each(f)
	}
}

func matchesAll(ms []*labels.Matcher, lset labels.Labels) bool {
	for _, m := range ms {
		if !m.Matches(lset.Get(m.Name)) {
			return false
		}
	}
	return true
}

// classify turns an engine or parser error into a *backend.Error.
func classify(err error) error {
	var (
		perrs    parser.ParseErrors
		perr     *parser.ParseErr
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.As(err, &timeout), errors.As(err, &canceled):
		return &backend.Error{Backend: Backend, Reason: "timeout", Err: errors.New("no answer within the deadline")}
	case errors.As(err, &perrs), errors.As(err, &perr):
		return &backend.Error{Backend: Backend, Reason: "bad_query", Err: errors.New(backend.FirstLine(err.Error()))}
	}
	return &backend.Error{Backend: Backend, Reason: "backend_error", Err: errors.New(backend.FirstLine(err.Error()))}
}

func toMetric(lset labels.Labels) model.Metric {
	m := make(model.Metric, lset.Len())
	lset.Range(func(l labels.Label) { m[model.LabelName(l.Name)] = model.LabelValue(l.Value) })
	return m
}

func toLabelSet(lset labels.Labels) model.LabelSet {
	return model.LabelSet(toMetric(lset))
}

// queryable is the store as the PromQL engine reads it.
type queryable struct{ s *Store }

func (q queryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{s: q.s, mint: mint, maxt: maxt}, nil
}

// querier copies the matching samples of [mint, maxt] out under the
// targets' read locks, so the engine iterates without holding any lock
// while scrapes go on appending.
type querier struct {
	s          *Store
	mint, maxt int64
}

func (q *querier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	var out []*listSeries
	for _, tg := range q.s.snapshot() {
		if err := ctx.Err(); err != nil {
			return storage.ErrSeriesSet(err)
		}
		tg.mu.RLock()
		tg.match(ms, func(m *memSeries) {
			if m.lastT < mint {
				return
			}
			var samples []sample
			if hints == nil || hints.Func != "series" {
				samples = m.samples(nil, mint, maxt)
				if len(samples) == 0 {
					return
				}
			}
			out = append(out, &listSeries{lset: m.lset, samples: samples})
		})
		tg.mu.RUnlock()
	}
	// The engine wants sorted series when it merges, and one series per
	// label set: see dedupe.
	slices.SortFunc(out, func(a, b *listSeries) int { return labels.Compare(a.lset, b.lset) })
	return &seriesSet{series: dedupe(out), i: -1}
}

// dedupe keeps, of series with equal labels from different targets (the
// store adds no target label), the one with the newest sample: a Prometheus
// server without a job/instance label would hold one series too.
func dedupe(sorted []*listSeries) []*listSeries {
	out := sorted[:0]
	for _, ls := range sorted {
		if n := len(out); n > 0 && labels.Equal(out[n-1].lset, ls.lset) {
			if ls.lastT() > out[n-1].lastT() {
				out[n-1] = ls
			}
			continue
		}
		out = append(out, ls)
	}
	return out
}

func (l *listSeries) lastT() int64 {
	if len(l.samples) == 0 {
		return math.MinInt64
	}
	return l.samples[len(l.samples)-1].t
}

func (q *querier) LabelValues(ctx context.Context, name string, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	for _, tg := range q.s.snapshot() {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		tg.mu.RLock()
		tg.match(ms, func(m *memSeries) {
			if v := m.lset.Get(name); v != "" {
				seen[v] = struct{}{}
			}
		})
		tg.mu.RUnlock()
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	slices.Sort(out)
	return out, nil, nil
}

func (q *querier) LabelNames(ctx context.Context, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	seen := map[string]struct{}{}
	for _, tg := range q.s.snapshot() {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		tg.mu.RLock()
		tg.match(ms, func(m *memSeries) {
			m.lset.Range(func(l labels.Label) { seen[l.Name] = struct{}{} })
		})
		tg.mu.RUnlock()
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil, nil
}

func (*querier) Close() error { return nil }

// seriesSet iterates copied series.
type seriesSet struct {
	series []*listSeries
	i      int
}

func (s *seriesSet) Next() bool                      { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series              { return s.series[s.i] }
func (*seriesSet) Err() error                        { return nil }
func (*seriesSet) Warnings() annotations.Annotations { return nil }
func (l *listSeries) Labels() labels.Labels          { return l.lset }
func (l *listSeries) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	return storage.NewListSeriesIterator(samples(l.samples))
}

// listSeries is one series' samples, copied out of the store.
type listSeries struct {
	lset    labels.Labels
	samples []sample
}

// samples adapts copied samples to storage.Samples, so that Prometheus'
// own list iterator serves the engine. Get returns a pointer into the
// slice: no allocation per sample.
type samples []sample

func (s samples) Get(i int) chunks.Sample { return &s[i] }
func (s samples) Len() int                { return len(s) }

func (s *sample) T() int64                    { return s.t }
func (*sample) ST() int64                     { return 0 }
func (s *sample) F() float64                  { return s.v }
func (*sample) H() *histogram.Histogram       { return nil }
func (*sample) FH() *histogram.FloatHistogram { return nil }
func (*sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s *sample) Copy() chunks.Sample         { c := *s; return &c }
