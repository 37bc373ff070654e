package ksm_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/ksm"
)

// TestServesClusterState starts kube-state-metrics against a control plane,
// reads the kube-system namespace from its /metrics, and checks that Stop
// leaves no process behind.
func TestServesClusterState(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	k := ksm.StartT(t, c.KubeconfigPath(), func(o *ksm.Options) { o.Resources = []string{"namespaces"} })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, k.URL()+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := `kube_namespace_status_phase{namespace="kube-system",phase="Active"} 1`; !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s:\n%.2000s", want, body)
	}

	pid := k.PID()
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kube-state-metrics (pid %d) still there after Stop: kill(0) = %v", pid, err)
	}
}

// TestStartWithoutBinary checks the message a machine without `make tools`
// gets.
func TestStartWithoutBinary(t *testing.T) {
	_, err := ksm.Start(context.Background(), ksm.Options{Kubeconfig: os.DevNull, BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Errorf("Start without a binary: %v, want a hint to run `make tools`", err)
	}
}
