// Package promapi reads the Prometheus HTTP query API that Prometheus,
// Thanos Query and Cortex all serve, for the harnesses under test/ and
// their tests: an instant query with extra parameters (Thanos' dedup) and
// headers (a tenant's THANOS-TENANT or X-Scope-OrgID), answered as a vector
// plus the warnings a partial response carries.
package promapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sample is one series of an instant vector.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Result is an instant query's answer.
type Result struct {
	// Samples are sorted by their label sets, so results compare with
	// cmp.Diff.
	Samples []Sample
	// Warnings are the API's warnings, e.g. Thanos' partial-response
	// "failed to receive any data from ..." when an endpoint is down.
	Warnings []string
}

// Request is an instant query.
type Request struct {
	// Base is the API root: the URL below which /api/v1/query lives, e.g.
	// http://127.0.0.1:9090 for Prometheus and Thanos Query,
	// http://127.0.0.1:9009/prometheus for Cortex.
	Base  string
	Query string
	// Time is the evaluation time; zero means the server's now.
	Time time.Time
	// Params are further form values, e.g. dedup=false for Thanos Query.
	Params url.Values
	// Header is sent with the request, e.g. a tenant header.
	Header http.Header
}

// StatusError is the error for an answer other than 200 OK.
type StatusError struct {
	Path string
	Code int
	Body string // the first line of the body
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: %d %s: %s", e.Path, e.Code, http.StatusText(e.Code), e.Body)
}

// Instant runs r through hc (which bounds it) and returns the vector. A
// result of another type is an error.
func Instant(ctx context.Context, hc *http.Client, r Request) (Result, error) {
	form := url.Values{"query": {r.Query}}
	for k, vs := range r.Params {
		form[k] = append(form[k], vs...)
	}
	if !r.Time.IsZero() {
		form.Set("time", strconv.FormatFloat(float64(r.Time.UnixMilli())/1e3, 'f', 3, 64))
	}
	var answer struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
		Warnings []string `json:"warnings"`
	}
	path, err := get(ctx, hc, strings.TrimSuffix(r.Base, "/")+"/api/v1/query?"+form.Encode(), r.Header, &answer)
	if err != nil {
		return Result{}, err
	}
	if answer.Status != "success" || answer.Data.ResultType != "vector" {
		return Result{}, fmt.Errorf("GET %s: status %q, result type %q, want a success with a vector", path, answer.Status, answer.Data.ResultType)
	}
	res := Result{Samples: make([]Sample, 0, len(answer.Data.Result)), Warnings: answer.Warnings}
	for _, s := range answer.Data.Result {
		str, ok := s.Value[1].(string)
		if !ok {
			return Result{}, fmt.Errorf("GET %s: sample %v: value %v is not a string", path, s.Metric, s.Value[1])
		}
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return Result{}, fmt.Errorf("GET %s: sample %v: %w", path, s.Metric, err)
		}
		res.Samples = append(res.Samples, Sample{Labels: s.Metric, Value: v})
	}
	sort.Slice(res.Samples, func(i, j int) bool {
		return LabelString(res.Samples[i].Labels) < LabelString(res.Samples[j].Labels)
	})
	return res, nil
}

// SeriesRequest is a /api/v1/series request.
type SeriesRequest struct {
	// Base is the API root, as in Request.
	Base string
	// Match are the series selectors (match[]).
	Match []string
	// Start and End bound the search; zero leaves them to the server.
	Start, End time.Time
	// Params are further form values, e.g. dedup=false for Thanos Query.
	Params url.Values
	// Header is sent with the request, e.g. a tenant header.
	Header http.Header
}

// Series returns the label sets /api/v1/series finds, sorted.
func Series(ctx context.Context, hc *http.Client, r SeriesRequest) ([]map[string]string, error) {
	form := url.Values{"match[]": r.Match}
	for k, vs := range r.Params {
		form[k] = append(form[k], vs...)
	}
	if !r.Start.IsZero() {
		form.Set("start", strconv.FormatFloat(float64(r.Start.UnixMilli())/1e3, 'f', 3, 64))
	}
	if !r.End.IsZero() {
		form.Set("end", strconv.FormatFloat(float64(r.End.UnixMilli())/1e3, 'f', 3, 64))
	}
	var answer struct {
		Status string              `json:"status"`
		Data   []map[string]string `json:"data"`
	}
	path, err := get(ctx, hc, strings.TrimSuffix(r.Base, "/")+"/api/v1/series?"+form.Encode(), r.Header, &answer)
	if err != nil {
		return nil, err
	}
	if answer.Status != "success" {
		return nil, fmt.Errorf("GET %s: status %q", path, answer.Status)
	}
	sort.Slice(answer.Data, func(i, j int) bool { return LabelString(answer.Data[i]) < LabelString(answer.Data[j]) })
	return answer.Data, nil
}

// get fetches u with header and decodes a 200 answer's JSON into v. It
// returns the request's path for messages.
func get(ctx context.Context, hc *http.Client, u string, header http.Header, v any) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	for name, values := range header {
		for _, val := range values {
			req.Header.Add(name, val)
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return req.URL.Path, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return req.URL.Path, fmt.Errorf("GET %s: reading body: %w", req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		return req.URL.Path, &StatusError{Path: req.URL.Path, Code: resp.StatusCode, Body: line}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return req.URL.Path, fmt.Errorf("GET %s: decoding answer: %w", req.URL.Path, err)
	}
	return req.URL.Path, nil
}

// LabelString renders a label set as {a="1", b="2"}, names sorted.
func LabelString(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", n, labels[n])
	}
	b.WriteByte('}')
	return b.String()
}
