package kubestate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/collectors/kubestate"
	"github.com/gantry-dev/gantry/collectors/store"
	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/ksm"
)

// TestUnavailableReplicasFromRealKubeStateMetrics runs the real
// kube-state-metrics against a local control plane with kwok, scrapes it
// into a store and follows a Deployment whose pods cannot become available
// (bound to a node that does not exist) through a scale-up and a
// scale-down, next to one whose pods run on a fake node.
func TestUnavailableReplicasFromRealKubeStateMetrics(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{Kwok: true})
	k := ksm.StartT(t, c.KubeconfigPath(), func(o *ksm.Options) {
		o.Resources = []string{"deployments", "pods"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.AddFakeNode(ctx, "fake-1", "4", "8Gi"); err != nil {
		t.Fatal(err)
	}
	client := c.Client().AppsV1().Deployments(metav1.NamespaceDefault)
	for name, node := range map[string]string{"stuck": "no-such-node", "web": "fake-1"} {
		if _, err := client.Create(ctx, deployment(name, node, 3), metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating deployment %s: %v", name, err)
		}
	}

	reg := prometheus.NewPedanticRegistry()
	st := store.New(store.Options{Registerer: reg})
	scraper, err := kubestate.New(kubestate.Options{URL: k.URL(), Interval: time.Second}, st, reg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		scraper.Run(runCtx)
		close(done)
	}()
	defer func() {
		stop()
		<-done
	}()

	unavailable := func(name string) string {
		return fmt.Sprintf(`kube_deployment_status_replicas_unavailable{namespace="default",deployment=%q}`, name)
	}
	waitFor(ctx, t, st, unavailable("stuck"), 3)
	waitFor(ctx, t, st, unavailable("web"), 0)
	waitFor(ctx, t, st, `kube_deployment_status_replicas_available{namespace="default",deployment="web"}`, 3)
	// The pods of the stuck Deployment are Pending, as kube-state-metrics
	// reports them.
	waitFor(ctx, t, st, `count(kube_pod_status_phase{namespace="default",phase="Pending"} == 1)`, 3)

	for _, replicas := range []int32{5, 1} {
		scale, err := client.GetScale(ctx, "stuck", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		scale.Spec.Replicas = replicas
		if _, err := client.UpdateScale(ctx, "stuck", scale, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("scaling to %d: %v", replicas, err)
		}
		waitFor(ctx, t, st, unavailable("stuck"), float64(replicas))
	}

	sets, err := st.Series(ctx, []string{`kube_deployment_status_replicas_unavailable{namespace="default"}`}, time.Now().Add(-time.Minute), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ls := range sets {
		names = append(names, string(ls["deployment"]))
	}
	if len(names) != 2 || names[0] != "stuck" || names[1] != "web" {
		t.Errorf("Series: deployments %v, want [stuck web]", names)
	}
	if err := scraper.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
	if n := gaugeValue(t, reg, "gantry_store_series"); n == 0 {
		t.Error("gantry_store_series = 0 with kube-state-metrics scraped")
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}

	// kube-state-metrics goes away: the series stay for StaleAfter, then
	// leave, and Ready reports it.
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	for {
		vec, err := st.Query(ctx, unavailable("stuck"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(vec) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("series still there %s after kube-state-metrics stopped", time.Since(stopped))
		case <-time.After(100 * time.Millisecond):
		}
	}
	gone := time.Since(stopped)
	t.Logf("series dropped %s after kube-state-metrics stopped (StaleAfter %s)", gone.Round(10*time.Millisecond), scraper.StaleAfter())
	if gone < scraper.StaleAfter()-time.Second {
		t.Errorf("series dropped after %s, before StaleAfter (%s)", gone, scraper.StaleAfter())
	}
	if err := scraper.Ready(); err == nil {
		t.Error("Ready = nil with kube-state-metrics gone past StaleAfter")
	} else {
		t.Logf("Ready: %v", err)
	}
}

func deployment(name, node string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					// No scheduler here: the pods are bound directly.
					NodeName:   node,
					Containers: []corev1.Container{{Name: name, Image: "example.invalid/" + name + ":1"}},
				},
			},
		},
	}
}

// waitFor polls query on the store until it returns one sample equal to
// want.
func waitFor(ctx context.Context, t *testing.T, st *store.Store, query string, want float64) {
	t.Helper()
	begin := time.Now()
	var last model.Vector
	var lastErr error
	for {
		last, lastErr = st.Query(ctx, query, time.Now())
		if lastErr == nil && len(last) == 1 && float64(last[0].Value) == want {
			t.Logf("%s = %v after %s", query, want, time.Since(begin).Round(10*time.Millisecond))
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: want %v, last got %v (err %v)", query, want, last, lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// gaugeValue reads a registered gauge without labels through a gather.
func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
