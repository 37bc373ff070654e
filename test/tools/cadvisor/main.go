// Command cadvisor is a real cAdvisor for Gantry's tests: the container
// manager, raw cgroup handler and Prometheus collector of
// github.com/google/cadvisor/lib (its cmd module is not served), on a
// loopback address, serving /metrics with the labels the kubelet's
// /metrics/cadvisor puts on pod containers. Run as root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/cadvisor/lib/cache/memory"
	"github.com/google/cadvisor/lib/container"
	"github.com/google/cadvisor/lib/manager"
	"github.com/google/cadvisor/lib/metrics"
	info "github.com/google/cadvisor/lib/model"
	"github.com/google/cadvisor/lib/utils/sysfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

func main() { os.Exit(run()) }

func run() int {
	listen := flag.String("listen", "127.0.0.1:0", "loopback host:port to serve /metrics on")
	addrFile := flag.String("addr-file", "", "once serving, write the bound host:port to this file")
	parent := flag.String("pod-parent", "/gantry-test", "cgroup under which <namespace>_<pod>_<container> cgroups get kubelet labels")
	interval := flag.Duration("housekeeping", time.Second, "housekeeping interval (per container and global)")
	klog.InitFlags(nil)
	flag.Parse()
	// The library's own flags sit on flag.CommandLine: short intervals keep tests quick.
	for _, name := range []string{"housekeeping_interval", "global_housekeeping_interval"} {
		_ = flag.Set(name, interval.String())
	}

	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail("listening: %v", err)
	}
	if ip := l.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		return fail("%s is not a loopback address", l.Addr())
	}
	included := container.MetricSet{container.CpuUsageMetrics: {}, container.MemoryUsageMetrics: {}, container.ProcessMetrics: {}}
	dynamic := false
	m, err := manager.New(memory.New(2*time.Minute, nil), sysfs.NewRealSysFs(),
		manager.HousekeepingConfig{Interval: interval, AllowDynamic: &dynamic}, included, []string{"/"}, nil, "", 0)
	if err != nil {
		return fail("creating container manager: %v", err)
	}
	if err := m.Start(); err != nil {
		return fail("starting container manager: %v", err)
	}
	defer m.Stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.NewPrometheusCollector(m, kubeletLabels(strings.TrimSuffix(*parent, "/")), included, clock.RealClock{},
			info.RequestOptions{IdType: info.TypeName, Count: 1, Recursive: true}),
		metrics.NewPrometheusMachineCollector(m, included))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile+".tmp", []byte(l.Addr().String()), 0o644); err != nil {
			return fail("writing address file: %v", err)
		}
		if err := os.Rename(*addrFile+".tmp", *addrFile); err != nil {
			return fail("writing address file: %v", err)
		}
	}
	klog.InfoS("serving cAdvisor metrics", "url", "http://"+l.Addr().String()+"/metrics", "podParent", *parent)
	select {
	case err := <-errc:
		return fail("serving: %v", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fail("shutting down: %v", err)
	}
	return 0
}

// kubeletLabels labels a cgroup <parent>/<namespace>_<pod>_<container> as the
// kubelet labels a pod's container (id, namespace, pod, container), and
// <parent>/<namespace>_<pod> as a pod cgroup (container empty). Kubernetes
// names have no "_", so the split is unambiguous. Other cgroups get only id.
func kubeletLabels(parent string) metrics.ContainerLabelsFunc {
	return func(c *info.ContainerInfo) map[string]string {
		set := map[string]string{metrics.LabelID: c.Name}
		rest, ok := strings.CutPrefix(c.Name, parent+"/")
		if !ok || strings.Contains(rest, "/") {
			return set
		}
		switch parts := strings.Split(rest, "_"); len(parts) {
		case 3:
			set["namespace"], set["pod"], set["container"] = parts[0], parts[1], parts[2]
		case 2:
			set["namespace"], set["pod"] = parts[0], parts[1]
		}
		return set
	}
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "cadvisor: "+format+"\n", args...)
	return 1
}
