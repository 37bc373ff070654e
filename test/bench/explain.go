package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// explainFlags configure the explain scenario (issue 17): the cost on
// Gantry of `kubectl gantry explain metric`, one
// diagnostics.gantry.dev metricexplanations call after another.
type explainFlags struct {
	calls int
	pods  int
}

func (f *explainFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.calls, "explain", 0, "explain scenario: sequential metric explanations (the Pods metric of -explain-pods pods) through the aggregator; Gantry's CPU and backend queries per call, and whether its value cache was touched; 0 skips it")
	fs.IntVar(&f.pods, "explain-pods", 10, "explain scenario: pods behind the explained HPA-like selector")
}

// explainResult is what the explain scenario measures.
type explainResult struct {
	Calls  int       `json:"calls"`
	Errors int       `json:"errors"`
	Pods   int       `json:"pods"`
	Lat    latencies `json:"latency_ms"`
	// Per call: Gantry's CPU (/proc), its backend queries and series calls
	// (its own gantry_backend_request_duration_seconds), and the queries
	// Prometheus answered (its prometheus_http_requests_total).
	GantryCPUMsPerCall    float64 `json:"gantry_cpu_ms_per_call"`
	GantryQueriesPerCall  float64 `json:"gantry_backend_queries_per_call"`
	GantrySeriesPerCall   float64 `json:"gantry_backend_series_calls_per_call"`
	PromQueriesPerCall    float64 `json:"prometheus_queries_per_call"`
	PromSeriesPerCall     float64 `json:"prometheus_series_calls_per_call"`
	APIServerCPUMsPerCall float64 `json:"apiserver_cpu_ms_per_call"`
	GantryAllocKiBPerCall float64 `json:"gantry_alloc_kib_per_call"`
	ResponseBytesPerCall  float64 `json:"response_bytes_per_call"`
	Diagnosis             string  `json:"diagnosis"`
	ValueCacheHitsDelta   float64 `json:"value_cache_hits_delta"`
	ValueCacheMissesDelta float64 `json:"value_cache_misses_delta"`
	ValueCacheUntouched   bool    `json:"value_cache_untouched"`
	// ServedRequestCacheHits is 1 when the ordinary request after the
	// explanations was still answered from the cache: only possible when
	// they took less than the TTL.
	ServedRequestCacheHits float64 `json:"served_request_cache_hits_after"`
}

// explainScenario warms the value cache with the metric's ordinary
// request, then explains the metric -explain times and reads what that
// cost Gantry and Prometheus, and whether the cache's counters moved.
func (b *bench) explainScenario(ctx context.Context) (result, error) {
	const ns, app = "explain-bench", "web"
	f := b.f.explain
	if _, err := b.ensurePods(ctx, ns, app, f.pods); err != nil {
		return result{}, err
	}
	if err := b.waitItems(ctx, b.customURL(ns, app), f.pods); err != nil {
		return result{}, err
	}
	u := b.st.Cluster.URL() + "/apis/diagnostics.gantry.dev/v1alpha1/namespaces/" + ns + "/metricexplanations/" + metric +
		"?type=pods&labelSelector=" + url.QueryEscape("app="+app)
	// The diagnostics APIService may become Available after the others.
	var diagnosis string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		body, err := b.okGet(ctx, u)
		if err == nil {
			var ex struct {
				Diagnosis struct{ Status, Reason string } `json:"diagnosis"`
			}
			if err = json.Unmarshal(body, &ex); err == nil {
				diagnosis = ex.Diagnosis.Status + ": " + ex.Diagnosis.Reason
				break
			}
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("explaining %s: %w", metric, err)
		}
		time.Sleep(time.Second)
	}
	// The ordinary request, as an HPA's, puts the value in the cache.
	if _, err := b.okGet(ctx, b.customURL(ns, app)); err != nil {
		return result{}, err
	}
	r := result{Scenario: "explain", Cores: runtime.NumCPU(), ValueCacheTTL: b.ttl, Pods: f.pods, Requests: f.calls}
	stamp(&r)
	before, err := b.mrSnapshot(ctx)
	if err != nil {
		return r, err
	}
	pb, err := b.promCounters(ctx)
	if err != nil {
		return r, err
	}
	ex := &explainResult{Calls: f.calls, Pods: f.pods, Diagnosis: diagnosis}
	var lat []time.Duration
	var bytesRead int
	for range f.calls {
		t0 := time.Now()
		body, err := b.okGet(ctx, u)
		lat = append(lat, time.Since(t0))
		if err != nil {
			ex.Errors++
			if ex.Errors > f.calls/10 {
				return r, err
			}
			continue
		}
		bytesRead += len(body)
	}
	after, err := b.mrSnapshot(ctx)
	if err != nil {
		return r, err
	}
	pa, err := b.promCounters(ctx)
	if err != nil {
		return r, err
	}
	per := 1 / float64(max(f.calls, 1))
	d := func(k string) float64 { return after.metrics[k] - before.metrics[k] }
	ex.Lat = percentiles(lat)
	ex.GantryCPUMsPerCall = round(1000*(after.gantryCPU-before.gantryCPU)*per, 2)
	ex.APIServerCPUMsPerCall = round(1000*(after.apiserverCPU-before.apiserverCPU)*per, 2)
	ex.GantryQueriesPerCall = round(d("queries")*per, 2)
	ex.GantrySeriesPerCall = round(d("series_calls")*per, 2)
	ex.GantryAllocKiBPerCall = round(d("go_memstats_alloc_bytes_total")/1024*per, 1)
	ex.PromQueriesPerCall = round((pa["query"]-pb["query"])*per, 2)
	ex.PromSeriesPerCall = round((pa["series"]-pb["series"])*per, 2)
	ex.ResponseBytesPerCall = round(float64(bytesRead)*per, 0)
	ex.ValueCacheHitsDelta = d(`gantry_value_cache_requests_total{result="hit"}`)
	ex.ValueCacheMissesDelta = d(`gantry_value_cache_requests_total{result="miss"}`)
	ex.ValueCacheUntouched = ex.ValueCacheHitsDelta == 0 && ex.ValueCacheMissesDelta == 0
	if !ex.ValueCacheUntouched {
		fmt.Fprintf(os.Stderr, "bench: explain: the value cache moved during %d explanations: %+.0f hits, %+.0f misses\n", f.calls, ex.ValueCacheHitsDelta, ex.ValueCacheMissesDelta)
	}
	// The ordinary request again: with a TTL, still a hit if the
	// explanations took less than it.
	if _, err := b.okGet(ctx, b.customURL(ns, app)); err != nil {
		return r, err
	}
	last, err := b.mrSnapshot(ctx)
	if err != nil {
		return r, err
	}
	ex.ServedRequestCacheHits = last.metrics[`gantry_value_cache_requests_total{result="hit"}`] - after.metrics[`gantry_value_cache_requests_total{result="hit"}`]
	r.Errors = ex.Errors
	r.Gantry = ex.Lat
	r.GantryRSSMiB = round(after.rssMiB, 1)
	r.Explain = ex
	return r, nil
}

// promCounters are Prometheus' own counts of the API calls it answered:
// instant queries and series listings.
func (b *bench) promCounters(ctx context.Context) (map[string]float64, error) {
	body, code, err := get(ctx, b.prom, b.st.Prom.URL()+"/metrics")
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("prometheus /metrics: %d %v", code, err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "prometheus_http_requests_total{") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, `handler="/api/v1/query"`):
			out["query"] += v
		case strings.Contains(line, `handler="/api/v1/series"`):
			out["series"] += v
		}
	}
	return out, nil
}

func printExplainTable(out io.Writer, all []result) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := false
	for _, r := range all {
		e := r.Explain
		if e == nil {
			continue
		}
		if !header {
			fmt.Fprintln(w, "EXPLAIN\tTTL\tPODS\tCALLS\tERR\tp50/p99 ms\tGANTRY CPU ms/call\tALLOC KiB/call\tGANTRY Q/call\tPROM Q/call\tPROM SERIES/call\tAPISERVER CPU ms/call\tCACHE UNTOUCHED\tDIAGNOSIS\t")
			header = true
		}
		fmt.Fprintf(w, "metric\t%s\t%d\t%d\t%d\t%.1f/%.1f\t%.2f\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%v\t%s\t\n",
			r.ValueCacheTTL, e.Pods, e.Calls, e.Errors, e.Lat.P50, e.Lat.P99, e.GantryCPUMsPerCall, e.GantryAllocKiBPerCall, e.GantryQueriesPerCall,
			e.PromQueriesPerCall, e.PromSeriesPerCall, e.APIServerCPUMsPerCall, e.ValueCacheUntouched, e.Diagnosis)
	}
	w.Flush()
}
