package thanos

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/prom"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// ReplicaLabel is the external label that tells a Pair's two Prometheus
// replicas apart, and the label its querier deduplicates on.
const ReplicaLabel = "replica"

// ReplicaNames are the values of ReplicaLabel in a Pair, by index.
var ReplicaNames = [2]string{"a", "b"}

// PairOptions configure a Pair.
type PairOptions struct {
	// BinDir holds the thanos and prometheus binaries; empty means
	// toolbin.Dir().
	BinDir string
	// WorkDir holds every process' files, one subdirectory each; empty
	// means fresh temporary directories that Stop removes (Pair uses the
	// test's).
	WorkDir string
	// Logf receives progress lines; nil discards them (Pair uses t.Logf).
	Logf func(string, ...any)
	// ExternalLabels are given to both replicas besides ReplicaLabel, e.g.
	// a cluster label; they are on every series the querier returns.
	ExternalLabels map[string]string
	// PromOptions are passed to both replicas' Prometheus, e.g.
	// prom.WithFlags("--query.lookback-delta=1m").
	PromOptions []prom.Option
	// QueryFlags are appended to the querier's command line.
	QueryFlags []string
	// ReadyTimeout and StopGrace apply to the Thanos components (see
	// Options).
	ReadyTimeout time.Duration
	StopGrace    time.Duration
}

// Replica is one Prometheus of a Pair and its sidecar.
type Replica struct {
	// Name is its value of ReplicaLabel.
	Name    string
	Prom    *prom.Server
	Sidecar *Server
}

// HAPair is two Prometheus replicas holding the same series, a sidecar
// each, and a querier over both sidecars that deduplicates on ReplicaLabel:
// what an HA Prometheus pair behind Thanos looks like. Either replica (its
// Prometheus and sidecar) can be killed and revived.
type HAPair struct {
	Replicas [2]*Replica
	// Query is the querier; its Prometheus query API is at Query.URL().
	Query *Server

	mu     sync.Mutex // guards killed
	killed [2]bool
}

// StartPair starts both replicas, their sidecars and the querier, and waits
// until the querier sees both sidecars healthy. ctx bounds the start only:
// the processes run until Stop. On error whatever had started is stopped.
func StartPair(ctx context.Context, opts PairOptions) (*HAPair, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	binDir, err := toolbin.DirOr(opts.BinDir)
	if err != nil {
		return nil, err
	}
	subdir := func(name string) string {
		if opts.WorkDir == "" {
			return "" // each starter makes (and Stop removes) its own
		}
		return filepath.Join(opts.WorkDir, name)
	}
	thanosOpts := func(dir string) Options {
		return Options{BinDir: binDir, WorkDir: subdir(dir), Logf: logf, ReadyTimeout: opts.ReadyTimeout, StopGrace: opts.StopGrace}
	}
	p := &HAPair{}
	for i, name := range ReplicaNames {
		labels := map[string]string{ReplicaLabel: name}
		for k, v := range opts.ExternalLabels {
			if k != ReplicaLabel {
				labels[k] = v
			}
		}
		popts := append(append([]prom.Option{}, opts.PromOptions...), prom.WithExternalLabels(labels))
		ps, err := prom.StartProcess(ctx, binDir, subdir("prometheus-"+name), logf, popts...)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("replica %s: %w", name, err), p.Stop())
		}
		p.Replicas[i] = &Replica{Name: name, Prom: ps}
		sc, err := StartSidecar(ctx, SidecarConfig{PrometheusURL: ps.URL(), TSDBPath: ps.DataDir()}, thanosOpts("sidecar-"+name))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("replica %s: %w", name, err), p.Stop())
		}
		p.Replicas[i].Sidecar = sc
	}
	qopts := thanosOpts("query")
	qopts.Flags = opts.QueryFlags
	q, err := StartQuery(ctx, QueryConfig{
		Endpoints:     []string{p.Replicas[0].Sidecar.GRPCAddr(), p.Replicas[1].Sidecar.GRPCAddr()},
		ReplicaLabels: []string{ReplicaLabel},
	}, qopts)
	if err != nil {
		return nil, errors.Join(err, p.Stop())
	}
	p.Query = q
	return p, nil
}

// Pair runs an HAPair for the duration of a test (see StartPair). Missing
// binaries fail the test (it never skips outside -short). Cleanup stops
// every process and, if the test failed, prints their logs.
func Pair(t testing.TB, opts PairOptions) *HAPair {
	t.Helper()
	opts.BinDir, opts.WorkDir, opts.Logf = proc.TestDefaults(t, opts.BinDir, opts.WorkDir, opts.Logf, "thanos", "prometheus")
	ctx, cancel := context.WithTimeout(context.Background(), 5*readyTimeout(Options{ReadyTimeout: opts.ReadyTimeout})+time.Minute)
	defer cancel()
	p, err := StartPair(ctx, opts)
	if err != nil {
		t.Fatalf("thanos: pair: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("thanos: pair: %v", err)
		}
		if t.Failed() {
			for _, r := range p.Replicas {
				t.Logf("thanos: replica %s Prometheus log (%s):\n%s", r.Name, r.Prom.LogPath(), proc.LogTail(r.Prom.LogPath(), proc.MaxLogDump))
				t.Logf("thanos: replica %s sidecar log (%s):\n%s", r.Name, r.Sidecar.LogPath(), r.Sidecar.srv.LogTail())
			}
			t.Logf("thanos: query log (%s):\n%s", p.Query.LogPath(), p.Query.srv.LogTail())
		}
	})
	return p
}

// Write sends the same samples to every replica that is not killed, as a
// pair scraping the same targets would hold them (see prom.Server.Write).
func (p *HAPair) Write(ctx context.Context, samples []prom.Sample) error {
	return p.each(func(r *Replica) error { return r.Prom.Write(ctx, samples) })
}

// WriteCounter writes the same counter to every replica that is not
// killed (see prom.Server.WriteCounter).
func (p *HAPair) WriteCounter(ctx context.Context, labels map[string]string, perSecond float64, start, end time.Time, step time.Duration) error {
	return p.each(func(r *Replica) error { return r.Prom.WriteCounter(ctx, labels, perSecond, start, end, step) })
}

func (p *HAPair) each(f func(*Replica) error) error {
	p.mu.Lock()
	killed := p.killed
	p.mu.Unlock()
	var errs []error
	for i, r := range p.Replicas {
		if killed[i] {
			continue
		}
		if err := f(r); err != nil {
			errs = append(errs, fmt.Errorf("replica %s: %w", r.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Kill ends replica i (0 or 1): its sidecar, then its Prometheus, each with
// SIGTERM (SIGKILL after the stop grace), keeping their data and ports so
// that Revive can bring them back. The querier keeps answering from the
// other replica; its answers carry a warning for the dead endpoint until
// it drops it.
func (p *HAPair) Kill(i int) error {
	r, err := p.replica(i)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.killed[i] = true
	p.mu.Unlock()
	return errors.Join(r.Sidecar.Halt(), r.Prom.Halt())
}

// Revive restarts killed replica i's Prometheus and sidecar on their old
// addresses and waits until the querier sees the sidecar healthy again.
func (p *HAPair) Revive(ctx context.Context, i int) error {
	r, err := p.replica(i)
	if err != nil {
		return err
	}
	if err := r.Prom.Restart(ctx); err != nil {
		return fmt.Errorf("replica %s: %w", r.Name, err)
	}
	if err := r.Sidecar.Restart(ctx); err != nil {
		return fmt.Errorf("replica %s: %w", r.Name, err)
	}
	p.mu.Lock()
	p.killed[i] = false
	p.mu.Unlock()
	return p.Query.WaitEndpoints(ctx, r.Sidecar.GRPCAddr())
}

func (p *HAPair) replica(i int) (*Replica, error) {
	if i < 0 || i >= len(p.Replicas) {
		return nil, fmt.Errorf("no replica %d: a pair has replicas 0 and 1", i)
	}
	return p.Replicas[i], nil
}

// Stop stops the querier, both sidecars and both Prometheus servers
// (whatever of them had started), and returns every failure.
func (p *HAPair) Stop() error {
	var errs []error
	if p.Query != nil {
		errs = append(errs, p.Query.Stop())
	}
	for _, r := range p.Replicas {
		if r == nil {
			continue
		}
		if r.Sidecar != nil {
			errs = append(errs, r.Sidecar.Stop())
		}
		errs = append(errs, r.Prom.Stop())
	}
	return errors.Join(errs...)
}
