package vpa_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/vpa"
)

// TestRecommender runs the real recommender against a control plane: its
// CRDs are established, its own /metrics answers, Stop leaves no process,
// and a second recommender whose process dies before Stop makes Stop say
// so.
func TestRecommender(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	r := vpa.StartT(t, vpa.Options{Kubeconfig: c.KubeconfigPath(), Namespace: "default"})
	if _, _, err := r.MetricsClientResponses(ctx); err != nil {
		t.Fatalf("reading the recommender's metrics: %v", err)
	}
	pid := r.PID()
	if err := r.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("recommender (pid %d) still there after Stop: kill(0) = %v", pid, err)
	}

	crashed, err := vpa.Start(ctx, vpa.Options{WorkDir: t.TempDir(), Kubeconfig: c.KubeconfigPath(), Namespace: "default", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(crashed.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-crashed.Exited()
	if err := crashed.Stop(); err == nil || !strings.Contains(err.Error(), "had exited before Stop") {
		t.Errorf("Stop after the process died: %v, want it to say it had exited before Stop", err)
	}
}
