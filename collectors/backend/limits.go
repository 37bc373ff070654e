package backend

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Limits bound what Gantry holds of one backend answer. An answer over one
// fails its call with reason too_large (a *LimitError inside the
// *Error) and counts in gantry_backend_answers_rejected_total, so a
// backend, or whatever answers at its address, cannot make Gantry hold
// gigabytes and serve them on.
type Limits struct {
	// MaxResponseBytes bounds the bytes of an answer that are held: all
	// of a query answer (or a listing that is read whole), which is read
	// no further once it is over; and of a series listing that is decoded
	// as it streams (Prometheus'), one series' labels and the labels it
	// keeps. Default 64 MiB (--backend-max-response-bytes).
	MaxResponseBytes int64
	// MaxSamples bounds the samples of a query answer. Default 100,000
	// (--backend-max-samples).
	MaxSamples int
	// MaxSeries bounds the series a listing keeps: the label sets of
	// Series, the distinct shapes of SeriesShapes. Default 100,000
	// (--backend-max-series).
	MaxSeries int
}

// Defaults of Limits. Gantry's queries group by the object a rule is
// about, so a query answer has a sample per pod (or other object) of a
// namespace or a request: 100,000 is beyond the pods of the largest
// clusters Kubernetes supports (150,000 in all), and at a few hundred bytes
// per sample well within the bytes. A listing's series (Loki's streams, or
// what check-config lists) cost about 1.5 KiB each once decoded, so
// 100,000 of them ~150 MiB; discovery keeps only distinct shapes, of which
// even a million series have a few hundred.
const (
	DefaultMaxResponseBytes = 64 << 20
	DefaultMaxSamples       = 100_000
	DefaultMaxSeries        = 100_000
)

// WithDefaults fills in the limits left at zero.
func (l Limits) WithDefaults() Limits {
	if l.MaxResponseBytes <= 0 {
		l.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if l.MaxSamples <= 0 {
		l.MaxSamples = DefaultMaxSamples
	}
	if l.MaxSeries <= 0 {
		l.MaxSeries = DefaultMaxSeries
	}
	return l
}

type maxSeriesKey struct{}

// WithMaxSeries bounds the series that listings made with the returned
// context keep to n, when n is below the backend's own MaxSeries: a
// MetricRule's discovery (--metricrule-max-series) then holds at most n
// label sets, and stops reading the answer there, however many series its
// selector matches. n <= 0 leaves the backend's bound.
func WithMaxSeries(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, maxSeriesKey{}, n)
}

// For returns l with the bounds ctx lowers (WithMaxSeries).
func (l Limits) For(ctx context.Context) Limits {
	if n, ok := ctx.Value(maxSeriesKey{}).(int); ok && n > 0 && n < l.MaxSeries {
		l.MaxSeries = n
	}
	return l
}

// LimitError is an answer over one of the Limits.
type LimitError struct {
	// Limit names the limit in metrics: max_response_bytes, max_samples
	// or max_series.
	Limit string
	// What was counted ("bytes", "samples", "series", ...) and the most
	// there may be.
	What string
	Max  int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("the answer has more than %d %s (--%s)", e.Max, e.What, flagOf[e.Limit])
}

// flagOf is the flag that sets each limit.
var flagOf = map[string]string{
	"max_response_bytes": "backend-max-response-bytes",
	"max_samples":        "backend-max-samples",
	"max_series":         "backend-max-series",
}

// TooManyBytes is the error of an answer with more than MaxResponseBytes.
func (l Limits) TooManyBytes() error { return l.tooManyBytes() }

func (l Limits) tooManyBytes() *LimitError {
	return &LimitError{Limit: "max_response_bytes", What: "bytes", Max: l.MaxResponseBytes}
}

// TooManySamples is the error of an answer with more than MaxSamples.
func (l Limits) TooManySamples() error {
	return &LimitError{Limit: "max_samples", What: "samples", Max: int64(l.MaxSamples)}
}

// TooManySeries is the error of a listing that keeps more than MaxSeries of
// what (such as "series").
func (l Limits) TooManySeries(what string) error {
	return &LimitError{Limit: "max_series", What: what, Max: int64(l.MaxSeries)}
}

// ReadAnswer reads resp's body to its end into buf's room (buf may be nil),
// at most MaxResponseBytes of it: an answer that announces or turns out to
// be longer is a *LimitError, and is read no further. The buffer grows by
// doubling, capped at the limit, so it never holds much more than the limit.
func (l Limits) ReadAnswer(buf []byte, resp *http.Response) ([]byte, error) {
	limit := l.MaxResponseBytes
	if resp.ContentLength > limit {
		return buf[:0], l.tooManyBytes()
	}
	buf = buf[:0]
	if resp.ContentLength >= 0 && int64(cap(buf)) < resp.ContentLength+1 {
		// One more byte, to see the end without growing again.
		buf = make([]byte, 0, resp.ContentLength+1)
	}
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return buf, l.tooManyBytes()
			}
			grown := make([]byte, len(buf), min(max(2*int64(cap(buf)), 64<<10), limit+1))
			copy(grown, buf)
			buf = grown
		}
		n, err := resp.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf, l.tooManyBytes()
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
