package thanos_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/test/internal/promapi"
	"github.com/gantry-dev/gantry/test/prom"
	"github.com/gantry-dev/gantry/test/thanos"
)

// TestPairDeduplicatesAndSurvivesAReplica proves the HA pair: the querier
// merges the replicas' identical series into one each (and returns both
// copies with dedup=false), keeps answering with one replica killed, and
// sees the killed one again once revived.
func TestPairDeduplicatesAndSurvivesAReplica(t *testing.T) {
	p := thanos.Pair(t, thanos.PairOptions{ExternalLabels: map[string]string{"cluster": "test"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const n = 3
	at := time.Now().Truncate(time.Second)
	var samples []prom.Sample
	want := map[string]float64{} // label set → value, as dedup returns them
	for i := range n {
		pod := fmt.Sprintf("web-%d", i)
		samples = append(samples, prom.Sample{
			Labels: map[string]string{"__name__": "gantry_thanos_test_queue_depth", "namespace": "shop", "pod": pod},
			Value:  float64(10 + i), Time: at,
		})
		want[promapi.LabelString(map[string]string{"__name__": "gantry_thanos_test_queue_depth", "namespace": "shop", "pod": pod, "cluster": "test"})] = float64(10 + i)
	}
	if err := p.Write(ctx, samples); err != nil {
		t.Fatalf("writing to both replicas: %v", err)
	}
	wantAll := map[string]float64{} // dedup=false: each series once per replica
	for _, s := range samples {
		for _, r := range thanos.ReplicaNames {
			l := map[string]string{"cluster": "test", thanos.ReplicaLabel: r}
			for k, v := range s.Labels {
				l[k] = v
			}
			wantAll[promapi.LabelString(l)] = s.Value
		}
	}
	const query = `gantry_thanos_test_queue_depth`

	if diff := cmp.Diff(want, byLabels(ctx, t, p.Query, query, at, thanos.QueryParams{})); diff != "" {
		t.Errorf("%s with dedup: want %d series without the replica label (-want +got):\n%s", query, n, diff)
	}
	if diff := cmp.Diff(wantAll, byLabels(ctx, t, p.Query, query, at, thanos.QueryParams{NoDedup: true})); diff != "" {
		t.Errorf("%s with dedup=false: want %d series, both replicas' (-want +got):\n%s", query, 2*n, diff)
	}

	if got, err := p.Query.Series(ctx, []string{query}, at.Add(-time.Minute), at, thanos.QueryParams{}); err != nil || len(got) != n {
		t.Errorf("series %s with dedup: %v, %v; want %d series", query, got, err, n)
	}
	if got, err := p.Query.Series(ctx, []string{query}, at.Add(-time.Minute), at, thanos.QueryParams{NoDedup: true}); err != nil || len(got) != 2*n {
		t.Errorf("series %s with dedup=false: %v, %v; want %d series", query, got, err, 2*n)
	}

	if err := p.Kill(0); err != nil {
		t.Fatalf("killing replica a: %v", err)
	}
	res, err := p.Query.Query(ctx, query, at, thanos.QueryParams{})
	if err != nil {
		t.Fatalf("%s with replica a killed: %v", query, err)
	}
	t.Logf("with replica a killed the querier warns: %q", res.Warnings)
	if diff := cmp.Diff(want, toMap(res)); diff != "" {
		t.Errorf("%s with replica a killed: want the same %d series (-want +got):\n%s", query, n, diff)
	}
	onlyB := map[string]float64{}
	for k, v := range wantAll {
		if strings.Contains(k, thanos.ReplicaLabel+`="b"`) {
			onlyB[k] = v
		}
	}
	if diff := cmp.Diff(onlyB, byLabels(ctx, t, p.Query, query, at, thanos.QueryParams{NoDedup: true})); diff != "" {
		t.Errorf("%s with dedup=false and replica a killed: want replica b's %d series (-want +got):\n%s", query, n, diff)
	}

	if err := p.Revive(ctx, 0); err != nil {
		t.Fatalf("reviving replica a: %v", err)
	}
	if diff := cmp.Diff(wantAll, byLabels(ctx, t, p.Query, query, at, thanos.QueryParams{NoDedup: true})); diff != "" {
		t.Errorf("%s with dedup=false after reviving replica a: want both replicas' %d series (-want +got):\n%s", query, 2*n, diff)
	}
}

// TestReceiveTenancy proves tenancy on Thanos: a receiver files each
// tenant's remote write under tenant_id, and a querier enforcing tenancy
// answers a tenant's request only with that tenant's series, whatever the
// query's own matchers say. A querier that does not enforce it sees both
// tenants, so the isolation is the enforcement's doing.
func TestReceiveTenancy(t *testing.T) {
	r := thanos.StartReceiveT(t, thanos.ReceiveConfig{}, thanos.Options{})
	enforcing := thanos.StartQueryT(t, thanos.QueryConfig{Endpoints: []string{r.GRPCAddr()}, EnforceTenancy: true}, thanos.Options{})
	open := thanos.StartQueryT(t, thanos.QueryConfig{Endpoints: []string{r.GRPCAddr()}}, thanos.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	at := time.Now().Truncate(time.Second)
	const metric = "gantry_thanos_test_tenant_value"
	for tenant, v := range map[string]float64{"team-a": 1, "team-b": 2} {
		ns := strings.TrimPrefix(tenant, "team-")
		if err := r.Write(ctx, tenant, []prom.Sample{{Labels: map[string]string{"__name__": metric, "namespace": ns}, Value: v, Time: at}}); err != nil {
			t.Fatalf("writing tenant %s: %v", tenant, err)
		}
	}
	series := func(tenant, ns string) string {
		return promapi.LabelString(map[string]string{"__name__": metric, "namespace": ns, thanos.TenantLabel: tenant, "receive_replica": "0"})
	}
	a, b := series("team-a", "a"), series("team-b", "b")

	// The querier learns of the tenants' new TSDBs at its next endpoint
	// check: wait until the open querier sees both.
	waitFor(ctx, t, "both tenants through the open querier", func() (any, bool) {
		got, err := open.Query(ctx, metric, at, thanos.QueryParams{})
		m := toMap(got)
		return fmt.Sprint(m, err), err == nil && len(m) == 2
	})

	tests := []struct {
		name   string
		q      *thanos.Server
		tenant string
		query  string
		want   map[string]float64
	}{
		{name: "tenant a sees only its series", q: enforcing, tenant: "team-a", query: metric, want: map[string]float64{a: 1}},
		{name: "tenant b sees only its series", q: enforcing, tenant: "team-b", query: metric, want: map[string]float64{b: 2}},
		{name: "tenant a naming b's namespace sees nothing", q: enforcing, tenant: "team-a", query: metric + `{namespace="b"}`, want: map[string]float64{}},
		// The querier replaces a tenant matcher in the query with the
		// request's tenant rather than adding its own beside it.
		{name: "tenant a naming b's tenant label gets its own series", q: enforcing, tenant: "team-a", query: metric + `{tenant_id="team-b"}`, want: map[string]float64{a: 1}},
		{name: "no header is the default tenant, which has nothing", q: enforcing, query: metric, want: map[string]float64{}},
		{name: "without enforcement tenant a sees both", q: open, tenant: "team-a", query: metric, want: map[string]float64{a: 1, b: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := byLabels(ctx, t, tc.q, tc.query, at, thanos.QueryParams{Tenant: tc.tenant})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s as %q (-want +got):\n%s", tc.query, tc.tenant, diff)
			}
		})
	}
	t.Run("the series API as tenant a lists only its series", func(t *testing.T) {
		got, err := enforcing.Series(ctx, []string{metric}, at.Add(-time.Minute), at, thanos.QueryParams{Tenant: "team-a"})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range got {
			names = append(names, promapi.LabelString(l))
		}
		if diff := cmp.Diff([]string{a}, names); diff != "" {
			t.Errorf("series %s as team-a (-want +got):\n%s", metric, diff)
		}
	})
}

func TestStartMissingBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := thanos.StartQuery(context.Background(), thanos.QueryConfig{}, thanos.Options{BinDir: dir, WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "run `make tools`") {
		t.Fatalf("StartQuery with no binary in %s: got error %v, want one saying to run `make tools`", dir, err)
	}
}

// byLabels runs query through the querier q and returns label set →
// value; an error fails the test.
func byLabels(ctx context.Context, t *testing.T, q *thanos.Server, query string, at time.Time, p thanos.QueryParams) map[string]float64 {
	t.Helper()
	res, err := q.Query(ctx, query, at, p)
	if err != nil {
		t.Fatalf("%s (%+v): %v", query, p, err)
	}
	return toMap(res)
}

func toMap(res promapi.Result) map[string]float64 {
	m := map[string]float64{}
	for _, s := range res.Samples {
		m[promapi.LabelString(s.Labels)] = s.Value
	}
	return m
}

// waitFor polls cond until it reports done or ctx ends, which fails the
// test with the last state cond reported.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() (state any, done bool)) {
	t.Helper()
	for {
		state, done := cond()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last: %v", what, ctx.Err(), state)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
