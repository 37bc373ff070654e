package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gantry-dev/gantry/test/cluster"
)

// soakFlags configure the soak scenario: the 1,000-HPA-equivalent
// load (≈ 67 requests/s at a 15s sync) of mixed Pods, Object and External
// requests, with bursts.
type soakFlags struct {
	duration   time.Duration
	rate       float64
	burst      float64
	burstEvery time.Duration
	burstFor   time.Duration
	window     time.Duration
	targets    int
}

func (f *soakFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.duration, "soak", 0, "soak scenario: how long to run it, e.g. 10m; 0 skips it")
	fs.Float64Var(&f.rate, "soak-rps", 67, "soak scenario: steady requests per second (1,000 HPAs at a 15s sync ≈ 67)")
	fs.Float64Var(&f.burst, "soak-burst", 5, "soak scenario: the rate is multiplied by this during a burst")
	fs.DurationVar(&f.burstEvery, "soak-burst-every", time.Minute, "soak scenario: a burst starts this often (in the middle of each period)")
	fs.DurationVar(&f.burstFor, "soak-burst-for", 10*time.Second, "soak scenario: how long a burst lasts")
	fs.DurationVar(&f.window, "soak-window", time.Minute, "soak scenario: reporting period")
	fs.IntVar(&f.targets, "soak-targets", 333, "soak scenario: distinct targets of each kind (sets of 3 pods, Services, queues) over 10 namespaces; 333 of each at 67 req/s is each polled every 15s, as 1,000 HPAs")
}

// soakWindow is one reporting period of the soak.
type soakWindow struct {
	Index       int       `json:"index"`
	Requests    int       `json:"requests"`
	Errors      int       `json:"errors"`
	Latency     latencies `json:"latency_ms"`
	RSSMiB      float64   `json:"gantry_rss_mib"`
	Goroutines  float64   `json:"gantry_goroutines"`
	CPUPerReqMs float64   `json:"gantry_cpu_ms_per_request"`
	GantryCores float64   `json:"gantry_cores"`
	// The rest of the stack and the machine, to tell Gantry's trouble
	// from its neighbours'.
	PromCores      float64 `json:"prometheus_cores"`
	APIServerCores float64 `json:"apiserver_cores"`
	LoadAvg        string  `json:"loadavg"`
	LastError      string  `json:"last_error,omitempty"`
}

type soakResult struct {
	DurationS  float64      `json:"duration_seconds"`
	Rate       float64      `json:"steady_rps"`
	Burst      float64      `json:"burst_factor"`
	BurstEvery string       `json:"burst_every"`
	BurstFor   string       `json:"burst_for"`
	Window     string       `json:"window"`
	Windows    []soakWindow `json:"windows"`
}

type soakSample struct {
	window int
	d      time.Duration
	err    error
}

// soakScenario sends requests at the soak rate through the aggregator,
// round-robin over the three kinds and their targets, each from its own
// goroutine at its scheduled time (an open loop: a slow answer does not
// slow the load), and reports every window.
func (b *bench) soakScenario(ctx context.Context) (result, error) {
	f := b.f.soak
	urls, err := b.soakTargets(ctx, f.targets)
	if err != nil {
		return result{}, err
	}
	r := result{Scenario: "soak", Cores: runtime.NumCPU(), ValueCacheTTL: b.ttl}
	stamp(&r)
	sr := &soakResult{Rate: f.rate, Burst: f.burst, BurstEvery: f.burstEvery.String(), BurstFor: f.burstFor.String(), Window: f.window.String()}
	r.Soak = sr
	fmt.Fprintf(os.Stderr, "bench: soak: %.0f req/s for %s, ×%.0f for %s every %s (load %s)\n", f.rate, f.duration, f.burst, f.burstFor, f.burstEvery, r.LoadAvg)

	samples := make(chan soakSample, 4096)
	var wg sync.WaitGroup
	inflight := make(chan struct{}, 2000)
	begin := time.Now()
	end := begin.Add(f.duration)
	windows := int((f.duration + f.window - 1) / f.window)
	collected := make(chan []soakWindow)
	go func() { collected <- b.soakCollect(ctx, samples, windows) }()

	next := begin
	for i := 0; next.Before(end); i++ {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(next)):
		}
		if ctx.Err() != nil {
			break
		}
		at := next
		u := urls[i%len(urls)]
		w := int(at.Sub(begin) / f.window)
		select {
		case inflight <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-inflight }()
				t0 := time.Now()
				err := b.soakGet(ctx, u)
				samples <- soakSample{window: w, d: time.Since(t0), err: err}
			}()
		default:
			samples <- soakSample{window: w, err: fmt.Errorf("%d requests in flight: not sent", cap(inflight))}
		}
		rate := f.rate
		if phase := at.Sub(begin) % f.burstEvery; phase >= f.burstEvery/2 && phase < f.burstEvery/2+f.burstFor {
			rate *= f.burst
		}
		next = next.Add(time.Duration(float64(time.Second) / rate))
	}
	wg.Wait()
	close(samples)
	sr.Windows = <-collected
	sr.DurationS = round(time.Since(begin).Seconds(), 1)
	b.goroutineProfile(ctx, "gantry-soak-end.goroutines")
	for _, w := range sr.Windows {
		r.Requests += w.Requests
		r.Errors += w.Errors
	}
	r.RequestsPerS = round(float64(r.Requests)/f.duration.Seconds(), 1)
	if n := len(sr.Windows); n > 0 {
		r.GantryRSSMiB = sr.Windows[n-1].RSSMiB
	}
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	return r, nil
}

// soakCollect gathers the samples of each window and, at each window's
// end, Gantry's RSS, goroutines and CPU.
func (b *bench) soakCollect(ctx context.Context, samples <-chan soakSample, windows int) []soakWindow {
	window := b.f.soak.window
	out := make([]soakWindow, windows)
	lat := make([][]time.Duration, windows)
	pid := b.st.GantryPID()
	promPID, apiPID := b.st.Prom.PID(), b.st.Cluster.PIDs()[cluster.APIServer]
	cpu := make([]float64, windows+1)
	cpu[0], _ = procCPU(pid)
	promCPU, _ := procCPU(promPID)
	apiCPU, _ := procCPU(apiPID)
	tick := time.NewTicker(window)
	defer tick.Stop()
	closed := 0
	closeWindow := func() {
		if closed >= windows {
			return
		}
		w := &out[closed]
		w.Index = closed
		c, _ := procCPU(pid)
		cpu[closed+1] = c
		w.RSSMiB, _ = procRSS(pid)
		w.RSSMiB = round(w.RSSMiB, 1)
		if body, code, err := get(ctx, b.gantry, b.st.GantryURL+"/metrics"); err == nil && code == http.StatusOK {
			w.Goroutines = parseMetrics(body, map[string]bool{"go_goroutines": true}, "\x00")["go_goroutines"]
		}
		w.GantryCores = round((c-cpu[closed])/window.Seconds(), 3)
		if c, err := procCPU(promPID); err == nil {
			w.PromCores, promCPU = round((c-promCPU)/window.Seconds(), 3), c
		}
		if c, err := procCPU(apiPID); err == nil {
			w.APIServerCores, apiCPU = round((c-apiCPU)/window.Seconds(), 3), c
		}
		var lr result
		stamp(&lr)
		w.LoadAvg = lr.LoadAvg
		closed++
	}
	for {
		select {
		case s, ok := <-samples:
			if !ok {
				closeWindow() // the last, partial window
				for i := range out {
					out[i].Latency = percentiles(lat[i])
					if out[i].Requests > 0 {
						out[i].CPUPerReqMs = round((cpu[i+1]-cpu[i])*1000/float64(out[i].Requests), 3)
					}
				}
				return out[:closed]
			}
			if s.window >= windows {
				s.window = windows - 1
			}
			w := &out[s.window]
			w.Requests++
			if s.err != nil {
				w.Errors++
				w.LastError = firstLine(s.err.Error())
			} else {
				lat[s.window] = append(lat[s.window], s.d)
			}
		case <-tick.C:
			// Samples of requests sent in the window that just ended may
			// still arrive; they count in it, the process figures are
			// read at its end.
			closeWindow()
		}
	}
}

// soakGet is one request; an answer without items is an error, as an HPA
// would have no metric.
func (b *bench) soakGet(ctx context.Context, u string) error {
	body, err := b.okGet(ctx, u)
	if err != nil {
		return err
	}
	if bytes.Contains(body, []byte(`"items":[]`)) || (!bytes.Contains(body, []byte(`"items":[{`)) && !bytes.Contains(body, []byte(`"value":`))) {
		return fmt.Errorf("GET %s: no value: %s", u, firstLine(string(body)))
	}
	return nil
}

// soakTargets creates n sets of 3 pods, n Services and n queues with their
// series, spread over 10 namespaces, waits until each kind answers, and
// returns the request URLs in round-robin order (Pods, Object, External,
// ...).
func (b *bench) soakTargets(ctx context.Context, n int) ([]string, error) {
	var pods, objects, externals []string
	for i := range n {
		ns := fmt.Sprintf("soak-%d", i%10)
		if err := b.st.EnsureNamespace(ctx, ns); err != nil {
			return nil, err
		}
		app := fmt.Sprintf("soak-%03d", i)
		if _, err := b.ensurePods(ctx, ns, app, 3); err != nil {
			return nil, err
		}
		pods = append(pods, b.customURL(ns, app))

		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(8080)}}, Selector: map[string]string{"app": app}},
		}
		if _, err := b.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		b.feed.SetRate(map[string]string{"__name__": "ingress_requests_total", "namespace": ns, "service": app}, float64(10+i))
		objects = append(objects, b.st.Cluster.URL()+"/apis/custom.metrics.k8s.io/v1beta2/namespaces/"+ns+"/services/"+app+"/ingress_requests_per_second")

		queue := fmt.Sprintf("q-%03d", i)
		b.feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": ns, "queue": queue}, float64(100+i))
		externals = append(externals, b.st.Cluster.URL()+"/apis/external.metrics.k8s.io/v1beta1/namespaces/"+ns+"/queue_depth?labelSelector="+url.QueryEscape("queue="+queue))
	}
	var urls []string
	for i := range n {
		urls = append(urls, pods[i], objects[i], externals[i])
	}
	// Every kind answers with a value before the clock starts.
	ctx, cancel := context.WithTimeout(ctx, 3*b.f.relist+2*time.Minute)
	defer cancel()
	for _, u := range []string{pods[n-1], objects[n-1], externals[n-1]} {
		for {
			err := b.soakGet(ctx, u)
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for an answer: %w", err)
			case <-time.After(time.Second):
			}
		}
	}
	return urls, nil
}

func printSoakTable(out io.Writer, rs []result) {
	for _, r := range rs {
		s := r.Soak
		if s == nil || len(s.Windows) == 0 {
			continue
		}
		fmt.Fprintf(out, "\nsoak: %.0f req/s, ×%.0f for %s every %s, %d requests, %d errors over %.0fs (started %s, load %s)\n",
			s.Rate, s.Burst, s.BurstFor, s.BurstEvery, r.Requests, r.Errors, s.DurationS, r.Started, r.LoadAvg)
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(w, "WINDOW (%s)\tREQ\tERR\tp50 ms\tp99 ms\tmax ms\tRSS MiB\tGOROUTINES\tCPU ms/req\tCORES\tPROM CORES\tAPISERVER CORES\tLOADAVG\t\n", s.Window)
		for _, x := range s.Windows {
			fmt.Fprintf(w, "%d\t%d\t%d\t%.1f\t%.1f\t%.0f\t%.0f\t%.0f\t%.2f\t%.3f\t%.3f\t%.3f\t%s\t\n", x.Index+1, x.Requests, x.Errors,
				x.Latency.P50, x.Latency.P99, x.Latency.Max, x.RSSMiB, x.Goroutines, x.CPUPerReqMs, x.GantryCores, x.PromCores, x.APIServerCores, x.LoadAvg)
		}
		w.Flush()
		first, last := s.Windows[0], s.Windows[len(s.Windows)-1]
		fmt.Fprintf(out, "first vs last window: p99 %.1f → %.1f ms, RSS %.0f → %.0f MiB, goroutines %.0f → %.0f, CPU %.2f → %.2f ms/request\n",
			first.Latency.P99, last.Latency.P99, first.RSSMiB, last.RSSMiB, first.Goroutines, last.Goroutines, first.CPUPerReqMs, last.CPUPerReqMs)
	}
}

// goroutineProfile saves Gantry's goroutines (grouped, as text) into
// -pprof-dir.
func (b *bench) goroutineProfile(ctx context.Context, name string) {
	if b.f.pprofDir == "" {
		return
	}
	hc := &http.Client{Transport: b.gantry.Transport, Timeout: 30 * time.Second}
	body, code, err := get(ctx, hc, b.st.GantryURL+"/debug/pprof/goroutine?debug=1")
	if err != nil || code != http.StatusOK {
		fmt.Fprintf(os.Stderr, "bench: goroutine profile %s: %d %v\n", name, code, err)
		return
	}
	b.writeProfile(name, body)
}
