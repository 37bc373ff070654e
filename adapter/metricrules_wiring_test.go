package adapter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/collectors/backend"
)

// tenantOfCall is a lister that records the tenant its call was made for.
type tenantOfCall struct{ tenant string }

func (l *tenantOfCall) Series(ctx context.Context, _ []string, _, _ time.Time) ([]model.LabelSet, error) {
	// A tenancy with none of its own reads the tenant the context names.
	// It fails for a call that names none.
	l.tenant, _ = (&backend.Tenancy{Header: "X-Scope-OrgID"}).TenantOf(ctx, "test")
	return nil, nil
}

// TestNamespaceListersUseTheNamespacesTenant: a MetricRule's discovery on
// a backend with tenants lists its namespace's tenant only (a cluster
// rule's lists every tenant), and none when the namespace has no tenant.
func TestNamespaceListersUseTheNamespacesTenant(t *testing.T) {
	mimir, prom := &tenantOfCall{}, &tenantOfCall{}
	listers := map[string]discovery.SeriesLister{"mimir": mimir, "prometheus": prom}
	tenancies := map[string]*backend.Tenancy{"mimir": {Header: "X-Scope-OrgID", ByNamespace: map[string]string{"team-a": "tenant-a"}}}

	ls := namespaceListers(listers, tenancies, "team-a")
	for name, l := range ls {
		if _, err := l.Series(context.Background(), []string{"x"}, time.Time{}, time.Time{}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if mimir.tenant != "tenant-a" {
		t.Errorf("mimir listed as tenant %q; want tenant-a", mimir.tenant)
	}
	if ls["prometheus"] != prom {
		t.Error("a backend without tenants is wrapped")
	}

	_, err := namespaceListers(listers, tenancies, "team-b")["mimir"].Series(context.Background(), []string{"x"}, time.Time{}, time.Time{})
	var nt *backend.NoTenantError
	if !errors.As(err, &nt) || nt.Namespace != "team-b" {
		t.Errorf("team-b on mimir: %v; want a NoTenantError for team-b", err)
	}
}

// TestBusyClientConfig: the clients whose work grows with the teams'
// objects run at Gantry's own rate, unless the admin set --client-qps.
func TestBusyClientConfig(t *testing.T) {
	base := &rest.Config{Host: "https://127.0.0.1:6443", QPS: 5, Burst: 10}
	for _, tc := range []struct {
		name  string
		args  []string
		qps   float32
		burst int
	}{
		{name: "default --client-qps", qps: busyClientQPS, burst: busyClientBurst},
		{name: "--client-qps set by the admin", args: []string{"--client-qps=7"}, qps: 5, burst: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("gantry", pflag.ContinueOnError)
			s := NewServer(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got := s.busyClientConfig(base)
			if got.QPS != tc.qps || got.Burst != tc.burst {
				t.Errorf("QPS %v, burst %d; want %v, %d", got.QPS, got.Burst, tc.qps, tc.burst)
			}
			if got == base || base.QPS != 5 || base.Burst != 10 || got.Host != base.Host {
				t.Errorf("busyClientConfig changed or lost the base config: %+v", base)
			}
		})
	}
}
