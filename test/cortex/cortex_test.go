package cortex_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/test/cortex"
	"github.com/gantry-dev/gantry/test/internal/promapi"
	"github.com/gantry-dev/gantry/test/prom"
)

// TestTenantsIsolated proves the harness' Cortex is multi-tenant: each
// tenant's remote write is queryable by that tenant only, whatever the
// query's matchers say, and a request without X-Scope-OrgID is refused.
func TestTenantsIsolated(t *testing.T) {
	s := cortex.StartT(t, cortex.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const metric = "gantry_cortex_test_value"
	at := time.Now().Truncate(time.Second)
	for tenant, v := range map[string]float64{"team-a": 1, "team-b": 2} {
		ns := strings.TrimPrefix(tenant, "team-")
		if err := s.Write(ctx, tenant, []prom.Sample{{Labels: map[string]string{"__name__": metric, "namespace": ns}, Value: v, Time: at}}); err != nil {
			t.Fatalf("writing tenant %s: %v", tenant, err)
		}
	}
	series := func(ns string) string {
		return promapi.LabelString(map[string]string{"__name__": metric, "namespace": ns})
	}

	tests := []struct {
		name   string
		tenant string
		query  string
		want   map[string]float64
	}{
		{name: "tenant a sees only its series", tenant: "team-a", query: metric, want: map[string]float64{series("a"): 1}},
		{name: "tenant b sees only its series", tenant: "team-b", query: metric, want: map[string]float64{series("b"): 2}},
		{name: "tenant a naming b's namespace sees nothing", tenant: "team-a", query: metric + `{namespace="b"}`, want: map[string]float64{}},
		{name: "a tenant that wrote nothing sees nothing", tenant: "team-c", query: metric, want: map[string]float64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Query(ctx, tc.tenant, tc.query, at)
			if err != nil {
				t.Fatalf("%s as %s: %v", tc.query, tc.tenant, err)
			}
			got := map[string]float64{}
			for _, smp := range res.Samples {
				got[promapi.LabelString(smp.Labels)] = smp.Value
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s as %s (-want +got):\n%s", tc.query, tc.tenant, diff)
			}
		})
	}

	t.Run("the series API as tenant a lists only its series", func(t *testing.T) {
		got, err := s.Series(ctx, "team-a", []string{metric}, at.Add(-time.Minute), at)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]map[string]string{{"__name__": metric, "namespace": "a"}}, got); diff != "" {
			t.Errorf("series %s as team-a (-want +got):\n%s", metric, diff)
		}
	})
	t.Run("a query without X-Scope-OrgID is refused with 401", func(t *testing.T) {
		_, err := s.Query(ctx, "", metric, at)
		var se *promapi.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
			t.Fatalf("query without a tenant: %v, want a 401", err)
		}
	})
	t.Run("a write without X-Scope-OrgID is refused with 401", func(t *testing.T) {
		err := s.Write(ctx, "", []prom.Sample{{Labels: map[string]string{"__name__": metric, "namespace": "x"}, Value: 3, Time: at}})
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("write without a tenant: %v, want a 401", err)
		}
	})
}

func TestStartMissingBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := cortex.Start(context.Background(), cortex.Options{BinDir: dir, WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "run `make tools`") {
		t.Fatalf("Start with no binary in %s: got error %v, want one saying to run `make tools`", dir, err)
	}
}
