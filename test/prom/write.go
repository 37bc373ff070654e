package prom

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// Sample is one float sample of one series.
type Sample struct {
	// Labels identify the series and include __name__. Labels with an
	// empty value are dropped, as Prometheus treats them as absent.
	Labels map[string]string
	Value  float64
	Time   time.Time
}

// Write sends samples to Prometheus through remote write 1.0 (a
// snappy-compressed prompb.WriteRequest), in requests of at most the batch
// size (WithBatchSize). Samples are grouped by series and each series is
// sent in time order, across requests too, because Prometheus rejects
// out-of-order samples. Timestamps must be within about an hour of the
// newest sample already in the server, or Prometheus refuses them as too old.
// Write stops at the first rejected request.
func (s *Server) Write(ctx context.Context, samples []Sample) error {
	return s.writer().Write(ctx, samples)
}

// WriteCounter writes a counter that starts at 0 at start and grows by
// perSecond every second, sampled every step and ending exactly at end
// (samples at end, end-step, end-2*step, ... not before start). With uniform
// samples and no reset, rate(x[w]) evaluated at end is perSecond (up to
// float rounding) whenever end-start >= w+step and step < w; increase(x[w])
// is perSecond*w.
func (s *Server) WriteCounter(ctx context.Context, labels map[string]string, perSecond float64, start, end time.Time, step time.Duration) error {
	return s.writer().WriteCounter(ctx, labels, perSecond, start, end, step)
}

// writer is the server's own remote-write receiver as a Writer.
func (s *Server) writer() Writer {
	return Writer{URL: s.url + "/api/v1/write", BatchSize: s.batchSize, Client: s.client}
}

// Writer sends samples through remote write 1.0 to any receiver of it: a
// Prometheus (Server.Write uses one), a Thanos receive, a Cortex
// distributor. The zero value is not usable: set URL.
type Writer struct {
	// URL is the remote-write endpoint, e.g.
	// http://127.0.0.1:19291/api/v1/receive.
	URL string
	// Header is added to every request, e.g. a tenant's X-Scope-OrgID or
	// THANOS-TENANT.
	Header http.Header
	// BatchSize caps the samples per request (default 10000).
	BatchSize int
	// Client sends the requests (default: one with a 30s timeout); each
	// request is bounded by 30s as well.
	Client *http.Client
}

// Write sends samples as Server.Write does: grouped by series, each series
// in time order across requests, stopping at the first rejected request.
func (w Writer) Write(ctx context.Context, samples []Sample) error {
	if w.BatchSize <= 0 {
		w.BatchSize = defaultBatchSize
	}
	if w.Client == nil {
		w.Client = &http.Client{Timeout: 30 * time.Second}
	}
	series, err := groupSeries(samples)
	if err != nil {
		return err
	}
	var (
		req  prompb.WriteRequest
		n    int // samples in req
		sent int
	)
	flush := func() error {
		if n == 0 {
			return nil
		}
		if err := w.send(ctx, &req); err != nil {
			return fmt.Errorf("remote write of samples %d..%d of %d: %w", sent, sent+n-1, len(samples), err)
		}
		sent += n
		req.Timeseries, n = req.Timeseries[:0], 0
		return nil
	}
	for _, ts := range series {
		for rest := ts.Samples; len(rest) > 0; {
			k := min(len(rest), w.BatchSize-n)
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: ts.Labels, Samples: rest[:k]})
			rest, n = rest[k:], n+k
			if n == w.BatchSize {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// WriteCounter writes a counter as Server.WriteCounter does.
func (w Writer) WriteCounter(ctx context.Context, labels map[string]string, perSecond float64, start, end time.Time, step time.Duration) error {
	switch {
	case step <= 0:
		return fmt.Errorf("counter step must be positive, got %s", step)
	case perSecond < 0:
		return fmt.Errorf("counter rate must not be negative, got %g", perSecond)
	case end.Before(start):
		return fmt.Errorf("counter range ends (%s) before it starts (%s)", end.Format(time.RFC3339Nano), start.Format(time.RFC3339Nano))
	}
	n := int(end.Sub(start)/step) + 1
	samples := make([]Sample, n)
	for i := range n {
		t := end.Add(-time.Duration(n-1-i) * step)
		samples[i] = Sample{Labels: labels, Value: perSecond * t.Sub(start).Seconds(), Time: t}
	}
	return w.Write(ctx, samples)
}

// groupSeries turns samples into one prompb.TimeSeries per label set, with
// labels sorted by name and samples sorted by time. Series keep the order in
// which they first appear.
func groupSeries(samples []Sample) ([]prompb.TimeSeries, error) {
	index := map[string]int{}
	var series []prompb.TimeSeries
	var errs []error
	for i, smp := range samples {
		if smp.Labels["__name__"] == "" {
			errs = append(errs, fmt.Errorf("sample %d (%v): no __name__ label", i, smp.Labels))
			continue
		}
		if smp.Time.IsZero() {
			errs = append(errs, fmt.Errorf("sample %d (%v): no timestamp", i, smp.Labels))
			continue
		}
		lbls := make([]prompb.Label, 0, len(smp.Labels))
		for name, value := range smp.Labels {
			if value != "" {
				lbls = append(lbls, prompb.Label{Name: name, Value: value})
			}
		}
		sort.Slice(lbls, func(a, b int) bool { return lbls[a].Name < lbls[b].Name })
		key := seriesKey(lbls)
		j, ok := index[key]
		if !ok {
			j = len(series)
			index[key] = j
			series = append(series, prompb.TimeSeries{Labels: lbls})
		}
		series[j].Samples = append(series[j].Samples, prompb.Sample{Value: smp.Value, Timestamp: smp.Time.UnixMilli()})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, ts := range series {
		sort.SliceStable(ts.Samples, func(a, b int) bool { return ts.Samples[a].Timestamp < ts.Samples[b].Timestamp })
	}
	return series, nil
}

// seriesKey is unambiguous because label names cannot contain the
// separator bytes.
func seriesKey(lbls []prompb.Label) string {
	var b strings.Builder
	for _, l := range lbls {
		b.WriteString(l.Name)
		b.WriteByte(0xfe)
		b.WriteString(l.Value)
		b.WriteByte(0xff)
	}
	return b.String()
}

// send posts one request to the remote-write endpoint.
func (w Writer) send(ctx context.Context, wr *prompb.WriteRequest) error {
	raw, err := wr.Marshal()
	if err != nil {
		return fmt.Errorf("encoding write request: %w", err)
	}
	body := snappy.Encode(nil, raw)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for name, values := range w.Header {
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	req.Header.Set("User-Agent", "gantry-test-prom")
	resp, err := w.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", req.URL.Path, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}
