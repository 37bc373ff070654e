package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/test/cluster"
)

// TestClusterRunsReadyPods starts the whole control plane with kwok, runs a
// Deployment on a fake node until its pods are Ready, and checks that Stop
// leaves no process behind.
func TestClusterRunsReadyPods(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{Kwok: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := c.AddFakeNode(ctx, "fake-1", "4", "8Gi"); err != nil {
		t.Fatal(err)
	}

	client := c.Client()
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: metav1.NamespaceDefault},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					// No scheduler in this cluster: bind to the node directly.
					NodeName: "fake-1",
					Containers: []corev1.Container{{
						Name:  "web",
						Image: "example.invalid/web:1", // never pulled: kwok only fakes status
					}},
				},
			},
		},
	}
	if _, err := client.AppsV1().Deployments(dep.Namespace).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}

	var last string
	for {
		pods, err := client.CoreV1().Pods(dep.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err == nil {
			if last = describePods(pods.Items); readyCount(pods.Items) == 2 && len(pods.Items) == 2 {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pods not Ready: %v (last: %s, err %v)", ctx.Err(), last, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("pods: %s", last)
	for _, ip := range podIPs(ctx, t, c) {
		if !strings.HasPrefix(ip, "127.200.") {
			t.Errorf("pod IP %s is outside %s", ip, cluster.PodCIDR)
		}
	}

	pids := c.PIDs()
	if len(pids) != 4 {
		t.Errorf("PIDs() = %v, want etcd, kube-apiserver, kube-controller-manager and kwok", pids)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range pids {
		if running(pid) {
			t.Errorf("%s (pid %d) still running after Stop", name, pid)
		}
	}
}

// TestStartWithoutBinaries checks the message a machine without `make tools`
// gets (the e2e tests fail with it, they never skip).
func TestStartWithoutBinaries(t *testing.T) {
	_, err := cluster.Start(context.Background(), cluster.Options{BinDir: t.TempDir(), Kwok: true})
	if err == nil {
		t.Fatal("Start with an empty bin dir succeeded")
	}
	for _, want := range []string{"make tools", "kube-apiserver", "etcd", "kwok"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func readyCount(pods []corev1.Pod) int {
	n := 0
	for _, p := range pods {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

func describePods(pods []corev1.Pod) string {
	var parts []string
	for _, p := range pods {
		parts = append(parts, fmt.Sprintf("%s=%s/%s", p.Name, p.Status.Phase, p.Status.PodIP))
	}
	return strings.Join(parts, " ")
}

func podIPs(ctx context.Context, t *testing.T, c *cluster.Cluster) []string {
	t.Helper()
	pods, err := c.Client().CoreV1().Pods(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, p := range pods.Items {
		ips = append(ips, p.Status.PodIP)
	}
	return ips
}

// running reports whether a process with this pid exists. Stop has reaped
// its children, so a pid that still answers signal 0 is a live process.
func running(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// TestRestartAPIServer restarts the kube-apiserver: the same URL answers
// again, with what was stored before, and the old process is gone.
func TestRestartAPIServer(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before", Namespace: metav1.NamespaceDefault}, Data: map[string]string{"k": "v"}}
	if _, err := c.Client().CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	url, pid := c.URL(), c.PIDs()[cluster.APIServer]
	if err := c.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if c.URL() != url {
		t.Errorf("URL after the restart = %s, want %s", c.URL(), url)
	}
	if got := c.PIDs()[cluster.APIServer]; got == pid {
		t.Errorf("kube-apiserver pid %d unchanged after the restart", got)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the old kube-apiserver (pid %d) is still there: %v", pid, err)
	}
	got, err := c.Client().CoreV1().ConfigMaps(cm.Namespace).Get(ctx, cm.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading what was stored before the restart: %v", err)
	}
	if got.Data["k"] != "v" {
		t.Errorf("ConfigMap after the restart: %v", got.Data)
	}
}
