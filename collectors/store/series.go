package store

import (
	"math"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// staleNaN is Prometheus' staleness marker: a sample with this exact bit
// pattern tells the PromQL engine that the series ended there.
var staleNaN = math.Float64frombits(value.StaleNaN)

// memSeries is one series' samples over the retention window, Gorilla
// (XOR) encoded as in Prometheus' head block: a 15 s scrape of a counter
// costs one or two bytes per sample instead of sixteen. The samples live in
// a head chunk that is appended to and, once it spans chunkSpan, closed:
// its bytes are copied to an exact-size slice and the appender dropped.
// Closed chunks leave whole once their newest sample is older than the
// retention, so a series holds at most retention + chunkSpan of samples.
//
// memSeries is guarded by its target's lock.
type memSeries struct {
	lset labels.Labels // one string (stringlabels), shared by every query result
	hash uint64
	// next chains series of the same target whose label hashes collide.
	next *memSeries
	// idx is the position in the family's slice, for O(1) removal.
	idx int32
	// seen is the target generation (scrape) that last had this series.
	seen uint32

	lastT int64 // timestamp of the newest sample, math.MinInt64 if none

	closed   []closedChunk
	head     *chunkenc.XORChunk
	headMint int64
	app      chunkenc.Appender
	// ended is set while the newest sample is a staleness marker.
	ended bool
}

// closedChunk is a full chunk's bytes and the time of its newest sample.
type closedChunk struct {
	data []byte
	maxt int64
}

// maxChunkSamples bounds a chunk below the XOR encoding's limit (a uint16
// count) and keeps decoding a query's window cheap for fast scrapes.
const maxChunkSamples = 240

func newMemSeries(lset labels.Labels, hash uint64) *memSeries {
	return &memSeries{lset: lset, hash: hash, lastT: math.MinInt64}
}

// append adds one sample. Samples at or before the newest one are dropped,
// as Prometheus drops out-of-order and duplicate samples of a scrape; it
// reports whether the sample was kept.
func (s *memSeries) append(t int64, v float64, chunkSpan int64) bool {
	if t <= s.lastT {
		return false
	}
	if s.head != nil && (t-s.headMint >= chunkSpan || s.head.NumSamples() >= maxChunkSamples) {
		s.closeHead()
	}
	if s.head == nil {
		s.head = chunkenc.NewXORChunk()
		app, err := s.head.Appender()
		if err != nil {
			// An empty XOR chunk's appender cannot fail.
			panic(err)
		}
		s.app = app
		s.headMint = t
	}
	s.app.Append(0, t, v)
	s.lastT = t
	s.ended = value.IsStaleNaN(v)
	return true
}

// closeHead turns the head chunk into an exact-size closed chunk.
func (s *memSeries) closeHead() {
	b := s.head.Bytes()
	s.closed = append(s.closed, closedChunk{data: append(make([]byte, 0, len(b)), b...), maxt: s.lastT})
	s.head, s.app = nil, nil
}

// markStale appends a staleness marker at t, or just after the newest
// sample when that is not before t (explicit timestamps can run ahead of
// the scrape time), unless the series already ends with one.
func (s *memSeries) markStale(t, chunkSpan int64) {
	if s.lastT == math.MinInt64 || s.ended {
		return
	}
	s.append(max(t, s.lastT+1), staleNaN, chunkSpan)
}

// truncate drops the closed chunks whose newest sample is before mint and
// reports whether nothing at or after mint is left, so the series can go.
func (s *memSeries) truncate(mint int64) (empty bool) {
	n := 0
	for n < len(s.closed) && s.closed[n].maxt < mint {
		n++
	}
	if n > 0 {
		s.closed = append(s.closed[:0:0], s.closed[n:]...)
		if len(s.closed) == 0 {
			s.closed = nil
		}
	}
	return s.lastT < mint
}

// samples appends the samples in [mint, maxt] to dst.
func (s *memSeries) samples(dst []sample, mint, maxt int64) []sample {
	var it chunkenc.Iterator
	var c chunkenc.XORChunk
	for _, cc := range s.closed {
		if cc.maxt < mint {
			continue
		}
		c.Reset(cc.data)
		it = c.Iterator(it)
		dst = appendRange(dst, it, mint, maxt)
	}
	if s.head != nil && s.lastT >= mint {
		dst = appendRange(dst, s.head.Iterator(it), mint, maxt)
	}
	return dst
}

func appendRange(dst []sample, it chunkenc.Iterator, mint, maxt int64) []sample {
	for it.Next() == chunkenc.ValFloat {
		t, v := it.At()
		if t < mint {
			continue
		}
		if t > maxt {
			break
		}
		dst = append(dst, sample{t: t, v: v})
	}
	return dst
}

// sample is one decoded float sample.
type sample struct {
	t int64
	v float64
}
