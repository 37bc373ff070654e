package thanos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/internal/promapi"
	"github.com/gantry-dev/gantry/test/prom"
)

// SidecarConfig says which Prometheus a sidecar serves.
type SidecarConfig struct {
	// PrometheusURL is the Prometheus' base URL. Its configuration must
	// have external labels (prom.WithExternalLabels): the sidecar refuses
	// to start without them.
	PrometheusURL string
	// TSDBPath is the Prometheus' data directory (prom.Server.DataDir).
	TSDBPath string
}

// StartSidecar runs `thanos sidecar` for a running Prometheus and waits
// until it is ready, which it is once it has read the Prometheus' external
// labels. Its StoreAPI (GRPCAddr) serves the Prometheus' series with those
// labels added. ctx bounds the start only: the process runs until Stop.
func StartSidecar(ctx context.Context, cfg SidecarConfig, opts Options) (*Server, error) {
	if cfg.PrometheusURL == "" || cfg.TSDBPath == "" {
		return nil, fmt.Errorf("thanos sidecar needs a Prometheus URL and TSDB path, got %q and %q", cfg.PrometheusURL, cfg.TSDBPath)
	}
	return start(ctx, sidecarComponent(cfg, opts), opts)
}

// StartSidecarT runs a sidecar for p for the duration of a test (see
// StartSidecar); p must have been started with prom.WithExternalLabels.
// Cleanup stops it and, if the test failed, prints its log.
func StartSidecarT(t testing.TB, p *prom.Server, opts Options) *Server {
	t.Helper()
	opts = optionsT(t, opts)
	return startT(t, sidecarComponent(SidecarConfig{PrometheusURL: p.URL(), TSDBPath: p.DataDir()}, opts), opts)
}

func sidecarComponent(cfg SidecarConfig, opts Options) component {
	return component{
		kind:   "sidecar",
		nPorts: 2,
		build: func(_ string, ports []int) []string {
			return append(append([]string{"sidecar"}, commonFlags(ports[0], ports[1])...),
				"--prometheus.url="+cfg.PrometheusURL,
				"--tsdb.path="+cfg.TSDBPath,
				// Gives up on a Prometheus that stays unready past the
				// start's bound, instead of after its default 10 minutes.
				"--prometheus.ready_timeout="+strconv.Itoa(int(readyTimeout(opts).Seconds()))+"s",
			)
		},
	}
}

// QueryConfig says what a querier reads and how.
type QueryConfig struct {
	// Endpoints are the gRPC StoreAPI addresses it fans out to (sidecars'
	// and receivers' GRPCAddr). The start waits until every one is
	// connected and healthy.
	Endpoints []string
	// ReplicaLabels are the labels along which it deduplicates
	// (--query.replica-label), e.g. "replica" for a Pair. Deduplication
	// is on by default; a request turns it off with dedup=false.
	ReplicaLabels []string
	// EnforceTenancy makes it answer each request only with series whose
	// TenantLabel equals the request's tenant (--query.enforce-tenancy):
	// the value of TenantHeader, else DefaultTenant.
	EnforceTenancy bool
	// TenantHeader, TenantLabel and DefaultTenant default to Thanos' own
	// defaults (the constants of the same names).
	TenantHeader  string
	TenantLabel   string
	DefaultTenant string
}

// StartQuery runs `thanos query` over cfg.Endpoints and waits until it is
// ready and sees every endpoint healthy. Its Prometheus query API is at
// URL(). ctx bounds the start only: the process runs until Stop.
func StartQuery(ctx context.Context, cfg QueryConfig, opts Options) (*Server, error) {
	return start(ctx, queryComponent(cfg), opts)
}

// StartQueryT runs a querier for the duration of a test (see StartQuery).
// Cleanup stops it and, if the test failed, prints its log.
func StartQueryT(t testing.TB, cfg QueryConfig, opts Options) *Server {
	t.Helper()
	return startT(t, queryComponent(cfg), optionsT(t, opts))
}

func queryComponent(cfg QueryConfig) component {
	return component{
		kind:   "query",
		nPorts: 2,
		build: func(_ string, ports []int) []string {
			args := append([]string{"query"}, commonFlags(ports[0], ports[1])...)
			// The endpoint file (--endpoint.sd-config), inline: the
			// --endpoint flag is deprecated.
			var sd strings.Builder
			sd.WriteString("endpoints:\n")
			for _, e := range cfg.Endpoints {
				fmt.Fprintf(&sd, "  - address: %s\n", strconv.Quote(e))
			}
			if len(cfg.Endpoints) == 0 {
				sd.Reset()
				sd.WriteString("endpoints: []\n")
			}
			args = append(args, "--endpoint.sd-config="+sd.String())
			for _, l := range cfg.ReplicaLabels {
				args = append(args, "--query.replica-label="+l)
			}
			if cfg.EnforceTenancy {
				args = append(args, "--query.enforce-tenancy")
			}
			if cfg.TenantHeader != "" {
				args = append(args, "--query.tenant-header="+cfg.TenantHeader)
			}
			if cfg.TenantLabel != "" {
				args = append(args, "--query.tenant-label-name="+cfg.TenantLabel)
			}
			if cfg.DefaultTenant != "" {
				args = append(args, "--query.default-tenant-id="+cfg.DefaultTenant)
			}
			return args
		},
		ready: func(ctx context.Context, s *Server) error {
			return s.checkEndpoints(ctx, cfg.Endpoints, time.Time{})
		},
	}
}

// Endpoint is one StoreAPI endpoint as a querier sees it.
type Endpoint struct {
	// Addr is its address as configured.
	Addr string
	// Kind is the component it reported itself as: "sidecar", "receive", ...
	Kind string
	// LastError is the querier's last failure talking to it; empty means
	// healthy.
	LastError string
	// LastCheck is when the querier last talked to it successfully.
	LastCheck time.Time
	// LabelSets are the external label sets it announced, e.g.
	// {replica="a"}.
	LabelSets []map[string]string
}

// Endpoints lists the StoreAPI endpoints the querier knows, from its
// /api/v1/stores, sorted by address. Only a querier has them.
func (s *Server) Endpoints(ctx context.Context) ([]Endpoint, error) {
	body, err := proc.GetOK(ctx, s.client, s.url+"/api/v1/stores", 1<<20)
	if err != nil {
		return nil, err
	}
	var answer struct {
		Status string `json:"status"`
		Data   map[string][]struct {
			Name      string              `json:"name"`
			LastCheck time.Time           `json:"lastCheck"`
			LastError *string             `json:"lastError"`
			LabelSets []map[string]string `json:"labelSets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, fmt.Errorf("decoding /api/v1/stores: %w", err)
	}
	var out []Endpoint
	for kind, eps := range answer.Data {
		for _, e := range eps {
			ep := Endpoint{Addr: e.Name, Kind: kind, LastCheck: e.LastCheck, LabelSets: e.LabelSets}
			if e.LastError != nil {
				ep.LastError = *e.LastError
			}
			out = append(out, ep)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out, nil
}

// checkEndpoints returns nil when every one of addrs is a healthy endpoint
// of the querier, checked successfully after since (if not zero), else an
// error naming the first that is not.
func (s *Server) checkEndpoints(ctx context.Context, addrs []string, since time.Time) error {
	eps, err := s.Endpoints(ctx)
	if err != nil {
		return err
	}
	byAddr := map[string]Endpoint{}
	for _, e := range eps {
		byAddr[e.Addr] = e
	}
	for _, a := range addrs {
		e, ok := byAddr[a]
		switch {
		case !ok:
			return fmt.Errorf("endpoint %s not connected yet", a)
		case e.LastError != "":
			return fmt.Errorf("endpoint %s unhealthy: %s", a, e.LastError)
		case e.LastCheck.Before(since):
			return fmt.Errorf("endpoint %s not checked since %s (last successful check %s)", a,
				since.Format(time.RFC3339Nano), e.LastCheck.Format(time.RFC3339Nano))
		}
	}
	return nil
}

// WaitEndpoints waits until the querier has checked every one of addrs
// successfully after WaitEndpoints was called (after a Restart of a
// sidecar, say: until then the querier's view, and its connection, may be
// stale), polling until ctx ends. The querier checks its endpoints every 5
// seconds. The error names the first endpoint still missing or failing.
func (s *Server) WaitEndpoints(ctx context.Context, addrs ...string) error {
	since := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		probeCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last := s.checkEndpoints(probeCtx, addrs, since)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("thanos query at %s: %w (last check: %v)", s.url, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// QueryParams are the per-request options of Query.
type QueryParams struct {
	// Tenant, if set, is sent in the tenant header.
	Tenant string
	// TenantHeader names that header (default THANOS-TENANT).
	TenantHeader string
	// NoDedup asks for every replica's series (dedup=false).
	NoDedup bool
}

// Query runs an instant query through the querier's HTTP API at time at
// (zero: now). Warnings in the result report endpoints that failed (a
// partial response).
func (s *Server) Query(ctx context.Context, query string, at time.Time, p QueryParams) (promapi.Result, error) {
	r := promapi.Request{Base: s.url, Query: query, Time: at, Header: p.header()}
	if p.NoDedup {
		r.Params = map[string][]string{"dedup": {"false"}}
	}
	return promapi.Instant(ctx, s.client, r)
}

// header is the tenant header p asks for, nil if none.
func (p QueryParams) header() http.Header {
	if p.Tenant == "" {
		return nil
	}
	name := p.TenantHeader
	if name == "" {
		name = TenantHeader
	}
	h := http.Header{}
	h.Set(name, p.Tenant)
	return h
}

// Series runs /api/v1/series through the querier for the selectors match
// between start and end (zero: the server's defaults), with p's tenant and
// dedup.
func (s *Server) Series(ctx context.Context, match []string, start, end time.Time, p QueryParams) ([]map[string]string, error) {
	r := promapi.SeriesRequest{Base: s.url, Match: match, Start: start, End: end, Header: p.header()}
	if p.NoDedup {
		r.Params = map[string][]string{"dedup": {"false"}}
	}
	return promapi.Series(ctx, s.client, r)
}

// ReceiveConfig says how a receiver files remote writes by tenant.
type ReceiveConfig struct {
	// TenantHeader, TenantLabel and DefaultTenant default to Thanos' own
	// defaults (the constants of the same names).
	TenantHeader  string
	TenantLabel   string
	DefaultTenant string
	// Labels are its external labels (--label); Thanos requires at least
	// one: the default is receive_replica="0".
	Labels map[string]string
}

// Receive is a running `thanos receive`: a Server whose StoreAPI
// (GRPCAddr) serves what was written to RemoteWriteURL, each series with the
// tenant label added.
type Receive struct {
	*Server
	cfg ReceiveConfig
}

// StartReceive runs `thanos receive` as a single ingesting node (no
// hashring) with its TSDBs in the work dir, and waits until it is ready.
// ctx bounds the start only: the process runs until Stop.
func StartReceive(ctx context.Context, cfg ReceiveConfig, opts Options) (*Receive, error) {
	s, err := start(ctx, receiveComponent(cfg), opts)
	if err != nil {
		return nil, err
	}
	return &Receive{Server: s, cfg: cfg}, nil
}

// StartReceiveT runs a receiver for the duration of a test (see
// StartReceive). Cleanup stops it and, if the test failed, prints its log.
func StartReceiveT(t testing.TB, cfg ReceiveConfig, opts Options) *Receive {
	t.Helper()
	return &Receive{Server: startT(t, receiveComponent(cfg), optionsT(t, opts)), cfg: cfg}
}

func receiveComponent(cfg ReceiveConfig) component {
	return component{
		kind:    "receive",
		nPorts:  4, // HTTP, gRPC, remote write, Cap'n Proto replication
		dataDir: "tsdb",
		build: func(workDir string, ports []int) []string {
			args := append([]string{"receive"}, commonFlags(ports[0], ports[1])...)
			args = append(args,
				"--remote-write.address="+loopback(ports[2]),
				"--receive.capnproto-address="+loopback(ports[3]),
				"--tsdb.path="+filepath.Join(workDir, "tsdb"),
			)
			labels := cfg.Labels
			if len(labels) == 0 {
				labels = map[string]string{"receive_replica": "0"}
			}
			names := make([]string, 0, len(labels))
			for n := range labels {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				args = append(args, "--label="+n+"="+strconv.Quote(labels[n]))
			}
			if cfg.TenantHeader != "" {
				args = append(args, "--receive.tenant-header="+cfg.TenantHeader)
			}
			if cfg.TenantLabel != "" {
				args = append(args, "--receive.tenant-label-name="+cfg.TenantLabel)
			}
			if cfg.DefaultTenant != "" {
				args = append(args, "--receive.default-tenant-id="+cfg.DefaultTenant)
			}
			return args
		},
	}
}

// RemoteWriteURL is the receiver's remote-write endpoint.
func (r *Receive) RemoteWriteURL() string {
	return "http://" + loopback(r.ports[2]) + "/api/v1/receive"
}

// Writer is a remote writer to the receiver for tenant (the tenant header
// set; empty: none, so the default tenant).
func (r *Receive) Writer(tenant string) prom.Writer {
	w := prom.Writer{URL: r.RemoteWriteURL(), Client: r.client}
	if tenant != "" {
		h := r.cfg.TenantHeader
		if h == "" {
			h = TenantHeader
		}
		w.Header = http.Header{}
		w.Header.Set(h, tenant)
	}
	return w
}

// Write sends samples to the receiver as tenant's (see Writer).
func (r *Receive) Write(ctx context.Context, tenant string, samples []prom.Sample) error {
	return r.Writer(tenant).Write(ctx, samples)
}
