package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// usagePod is a pod of the test with the usage its annotations set.
type usagePod struct {
	name, node  string
	cpu, memory string // annotation values, per container
	containers  []string
}

// TestKubeletMetrics runs kwok's simulated kubelets behind the
// KubeletProxy: three fake nodes with their own addresses, pods whose usage
// comes from annotations, scraped over HTTPS exactly as from a kubelet
// (address and port from the Node's status, certificate checked against
// the cluster CA); then the real metrics-server, if built, against the same
// nodes.
func TestKubeletMetrics(t *testing.T) {
	c := StartT(t, Options{KubeletMetrics: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	begin := time.Now()
	fakeNodes, err := c.AddFakeNodes(ctx, 3, "4", "8Gi")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("3 fake nodes Ready in %s", time.Since(begin).Round(time.Millisecond))

	// Each node's kubelet endpoint, as a scraper finds it: the Node's
	// InternalIP and daemonEndpoints.kubeletEndpoint.port.
	endpoints := map[string]string{}
	for i, fn := range fakeNodes {
		n, err := c.Client().CoreV1().Nodes().Get(ctx, fn.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var ip string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ip = a.Address
			}
		}
		port := int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)
		if want := FakeNodeIP(i); ip != want || fn.InternalIP != want {
			t.Errorf("node %s: InternalIP %q in status, %q returned; want %q", fn.Name, ip, fn.InternalIP, want)
		}
		if port != c.KubeletPort() || port == 0 {
			t.Errorf("node %s: kubelet port %d in status, want %d", fn.Name, port, c.KubeletPort())
		}
		endpoints[fn.Name] = "https://" + ip + ":" + strconv.Itoa(port)
	}

	pods := []usagePod{
		{name: "a", node: fakeNodes[0].Name, cpu: "250m", memory: "64Mi", containers: []string{"app"}},
		{name: "b", node: fakeNodes[0].Name, cpu: "100m", memory: "32Mi", containers: []string{"app", "sidecar"}},
		{name: "c", node: fakeNodes[1].Name, cpu: "500m", memory: "128Mi", containers: []string{"app"}},
		{name: "d", node: fakeNodes[2].Name, cpu: "1", memory: "1Gi", containers: []string{"app"}},
	}
	begin = time.Now()
	createUsagePods(ctx, t, c, pods)
	t.Logf("%d pods Ready in %s", len(pods), time.Since(begin).Round(time.Millisecond))

	client := kubeletClient(t, c)
	const token = "Bearer gantry-test-token"

	t.Run("resource metrics follow the annotations", func(t *testing.T) {
		// kwok integrates CPU between two scrapes of a node, so the first
		// scrape only starts the clock. Its metrics read pods from a cache
		// of their own, which may lag the pods' Ready status a little.
		first := map[string]scrape{}
		for node, ep := range endpoints {
			for {
				first[node] = scrapeResource(ctx, t, client, ep, token)
				if hasContainers(first[node], pods, node) {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("node %s: not every container in /metrics/resource: %v", node, first[node].cpu)
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
		time.Sleep(3 * time.Second)
		second := map[string]scrape{}
		for node, ep := range endpoints {
			second[node] = scrapeResource(ctx, t, client, ep, token)
		}
		for _, p := range pods {
			for _, ctr := range p.containers {
				checkUsage(t, first[p.node], second[p.node], p, ctr, p.cpu, p.memory)
			}
		}
		// A node serves its own pods only.
		s := scrapeResource(ctx, t, client, endpoints[fakeNodes[1].Name], token)
		for key := range s.memory {
			if !strings.HasPrefix(key, metav1.NamespaceDefault+"/c/") {
				t.Errorf("node %s serves container %s of another node", fakeNodes[1].Name, key)
			}
		}
		if s.scrapeError == nil || *s.scrapeError != 0 {
			t.Errorf("scrape_error = %v, want 0", s.scrapeError)
		}
		last, count := c.KubeletProxy().LastRequest(fakeNodes[1].Name)
		if last.Path != "/metrics/resource" || last.Authorization != token || count < 2 {
			t.Errorf("proxy saw %+v (%d requests), want /metrics/resource with %q", last, count, token)
		}
	})

	t.Run("SetPodUsage changes usage while the pod runs", func(t *testing.T) {
		p := pods[0]
		if err := c.SetPodUsage(ctx, metav1.NamespaceDefault, p.name, "750m", "96Mi"); err != nil {
			t.Fatal(err)
		}
		// kwok reads the pod from its watch cache: wait for the new memory
		// value, which also restarts CPU integration at the new rate.
		ep := endpoints[p.node]
		key := metav1.NamespaceDefault + "/" + p.name + "/app"
		want := resource.MustParse("96Mi")
		var s scrape
		for s = scrapeResource(ctx, t, client, ep, token); s.memory[key] != float64(want.Value()); s = scrapeResource(ctx, t, client, ep, token) {
			select {
			case <-ctx.Done():
				t.Fatalf("memory of %s still %v, want %v", key, s.memory[key], want.Value())
			case <-time.After(200 * time.Millisecond):
			}
		}
		time.Sleep(2 * time.Second)
		checkUsage(t, s, scrapeResource(ctx, t, client, ep, token), p, "app", "750m", "96Mi")
		p.cpu, p.memory = "750m", "96Mi"
		pods[0] = p
	})

	t.Run("proxy", func(t *testing.T) {
		node, ep := fakeNodes[2].Name, endpoints[fakeNodes[2].Name]
		if code, body := get(ctx, t, client, ep+"/healthz", ""); code != http.StatusOK || body != "ok" {
			t.Errorf("/healthz: %d %q", code, body)
		}
		if code, _ := get(ctx, t, client, ep+"/metrics/cadvisor", ""); code != http.StatusNotFound {
			t.Errorf("/metrics/cadvisor without upstream: %d, want 404", code)
		}
		cadvisor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "" {
				t.Errorf("the proxy passed the kubelet credentials on to cAdvisor")
			}
			fmt.Fprintf(w, "container_cpu_usage_seconds_total{id=\"/\"} 1 %s\n", r.URL.Path)
		}))
		defer cadvisor.Close()
		if err := c.KubeletProxy().SetCadvisorUpstream(node, cadvisor.URL+"/metrics"); err != nil {
			t.Fatal(err)
		}
		if code, body := get(ctx, t, client, ep+"/metrics/cadvisor", token); code != http.StatusOK || !strings.Contains(body, "1 /metrics") {
			t.Errorf("/metrics/cadvisor: %d %q, want the upstream's /metrics", code, body)
		}
		if code, _ := get(ctx, t, client, ep+"/pods", ""); code != http.StatusNotFound {
			t.Errorf("/pods: %d, want 404", code)
		}

		// A client with a certificate: the proxy records its subject.
		certFile, keyFile := c.pki.admin.certFile, c.pki.admin.keyFile
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		withCert := kubeletClient(t, c)
		withCert.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
		get(ctx, t, withCert, ep+"/healthz", "")
		if last, _ := c.KubeletProxy().LastRequest(node); !strings.Contains(last.ClientCertSubject, "CN=admin") {
			t.Errorf("client cert subject %q, want CN=admin", last.ClientCertSubject)
		}

		// The serving certificate is the node's: another address's name
		// does not verify.
		strict := kubeletClient(t, c)
		strict.Transport.(*http.Transport).TLSClientConfig.ServerName = fakeNodes[0].InternalIP
		if _, err := strict.Get(ep + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("node %s's endpoint verified as %s: %v", node, fakeNodes[0].InternalIP, err)
		}
	})

	t.Run("metrics-server", func(t *testing.T) {
		runMetricsServer(ctx, t, c, pods, len(fakeNodes))
	})
}

// createUsagePods creates the pods on their nodes with their usage
// annotations and waits until all are Ready.
func createUsagePods(ctx context.Context, t *testing.T, c *Cluster, pods []usagePod) {
	t.Helper()
	for _, p := range pods {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: p.name, Namespace: metav1.NamespaceDefault,
				Annotations: map[string]string{UsageCPUAnnotation: p.cpu, UsageMemoryAnnotation: p.memory},
			},
			Spec: corev1.PodSpec{NodeName: p.node},
		}
		for _, ctr := range p.containers {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: ctr, Image: "example.invalid/" + ctr})
		}
		if _, err := c.Client().CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for {
		list, err := c.Client().CoreV1().Pods(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
		if err == nil && readyPods(list.Items) == len(pods) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pods not Ready: %v (last list: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readyPods(pods []corev1.Pod) int {
	n := 0
	for _, p := range pods {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

// kubeletClient trusts the cluster CA only, as a collector given
// --kubelet-certificate-authority does.
func kubeletClient(t *testing.T, c *Cluster) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAPEM()) {
		t.Fatal("cluster CA does not parse")
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
}

func get(ctx context.Context, t *testing.T, hc *http.Client, url, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// scrape is one /metrics/resource response: container CPU seconds and
// working set by namespace/pod/container, and when it was taken.
type scrape struct {
	at          time.Time // sample timestamp if kwok gives one, else the midpoint of the request
	cpu, memory map[string]float64
	scrapeError *float64
}

func scrapeResource(ctx context.Context, t *testing.T, hc *http.Client, endpoint, auth string) scrape {
	t.Helper()
	sent := time.Now()
	code, body := get(ctx, t, hc, endpoint+"/metrics/resource", auth)
	received := time.Now()
	if code != http.StatusOK {
		t.Fatalf("GET %s/metrics/resource: %d %s", endpoint, code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body + "\n"))
	if err != nil {
		t.Fatalf("parsing %s/metrics/resource: %v\n%s", endpoint, err, body)
	}
	s := scrape{at: sent.Add(received.Sub(sent) / 2), cpu: map[string]float64{}, memory: map[string]float64{}}
	collect := func(name string, dst map[string]float64) {
		for _, m := range families[name].GetMetric() {
			l := labels(m)
			key := l["namespace"] + "/" + l["pod"] + "/" + l["container"]
			if m.Counter != nil {
				dst[key] = m.GetCounter().GetValue()
			} else {
				dst[key] = m.GetGauge().GetValue()
			}
			if m.TimestampMs != nil {
				s.at = time.UnixMilli(m.GetTimestampMs())
			}
		}
	}
	collect("container_cpu_usage_seconds_total", s.cpu)
	collect("container_memory_working_set_bytes", s.memory)
	if f := families["scrape_error"]; f != nil && len(f.Metric) == 1 {
		v := f.Metric[0].GetGauge().GetValue()
		s.scrapeError = &v
	}
	return s
}

// hasContainers tells whether a scrape of node holds CPU and memory of
// every container of the pods on it.
func hasContainers(s scrape, pods []usagePod, node string) bool {
	for _, p := range pods {
		for _, ctr := range p.containers {
			key := metav1.NamespaceDefault + "/" + p.name + "/" + ctr
			if _, ok := s.cpu[key]; p.node == node && !ok {
				return false
			}
			if _, ok := s.memory[key]; p.node == node && !ok {
				return false
			}
		}
	}
	return true
}

func labels(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// checkUsage checks a container's CPU rate between two scrapes of its node
// and its memory in the second.
func checkUsage(t *testing.T, first, second scrape, p usagePod, ctr, cpu, memory string) {
	t.Helper()
	key := metav1.NamespaceDefault + "/" + p.name + "/" + ctr
	c0, ok0 := first.cpu[key]
	c1, ok1 := second.cpu[key]
	if !ok0 || !ok1 {
		t.Errorf("%s: no container_cpu_usage_seconds_total (first %v, second %v)", key, ok0, ok1)
		return
	}
	wantCPU := resource.MustParse(cpu)
	rate := (c1 - c0) / second.at.Sub(first.at).Seconds()
	// The rate is over the time between kwok's two evaluations; measured
	// from our side of the requests it is off by the requests' latency.
	if want := wantCPU.AsApproximateFloat64(); math.Abs(rate-want) > 0.05*want {
		t.Errorf("%s: CPU %.4f cores over %s (counter %.3f → %.3f), want %s", key, rate, second.at.Sub(first.at), c0, c1, cpu)
	}
	wantMem := resource.MustParse(memory)
	if got := second.memory[key]; got != float64(wantMem.Value()) {
		t.Errorf("%s: working set %.0f bytes, want %d (%s)", key, got, wantMem.Value(), memory)
	}
}

// runMetricsServer runs the real metrics-server against the fake nodes,
// checking their certificates with the cluster CA, and reads
// metrics.k8s.io from it directly (it is not registered as an APIService:
// Gantry owns that group in tests).
func runMetricsServer(ctx context.Context, t *testing.T, c *Cluster, pods []usagePod, nodes int) {
	binDir := toolbin.Require(t, "metrics-server")
	certFile, keyFile, _, err := c.ServingCert("metrics-server.kube-system.svc")
	if err != nil {
		t.Fatal(err)
	}
	var port int
	begin := time.Now()
	// Started is enough here: the loop below waits for its metrics.
	srv := proc.StartT(t, "cluster", time.Minute, func(ctx context.Context) (*proc.Server, error) {
		s := &proc.Server{
			Name: "metrics-server", Title: "metrics-server", Tag: "cluster", Tool: "metrics-server", BinDir: binDir,
			WorkDir: c.WorkDir(), LogName: "metrics-server.log", Logf: t.Logf,
			ReadyTimeout: time.Minute, StopGrace: 5 * time.Second,
			Prepare: func() (proc.Launch, error) {
				ports, err := proc.FreePorts(1)
				if err != nil {
					return proc.Launch{}, err
				}
				port = ports[0]
				return proc.Launch{Addr: listeners(ports), Args: []string{
					"--secure-port=" + strconv.Itoa(port),
					"--bind-address=127.0.0.1",
					"--tls-cert-file=" + certFile,
					"--tls-private-key-file=" + keyFile,
					"--kubeconfig=" + c.KubeconfigPath(),
					"--authentication-kubeconfig=" + c.KubeconfigPath(),
					"--authorization-kubeconfig=" + c.KubeconfigPath(),
					"--kubelet-use-node-status-port",
					"--kubelet-preferred-address-types=InternalIP",
					"--kubelet-certificate-authority=" + c.CAFile(),
					"--metric-resolution=10s",
					"--kubelet-request-timeout=5s",
					"--v=2",
				}}, nil
			},
			Ready: func(context.Context) error { return nil },
		}
		return s, s.Start(ctx)
	}, func(s *proc.Server) *proc.Server { return s })

	// The admin client certificate, as kubectl would present it through the
	// aggregator's place.
	client := kubeletClient(t, c)
	cert, err := tls.LoadX509KeyPair(c.pki.admin.certFile, c.pki.admin.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
	base := "https://127.0.0.1:" + strconv.Itoa(port) + "/apis/metrics.k8s.io/v1beta1"

	// metrics-server needs two scrapes of a node for a CPU rate.
	var podList metricsv1beta1.PodMetricsList
	var last string
	for {
		if err := exitErr(srv); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/namespaces/default/pods", nil)
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%s: %s", resp.Status, b)
			if resp.StatusCode == http.StatusOK && json.Unmarshal(b, &podList) == nil && len(podList.Items) == len(pods) {
				break
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("metrics-server served no metrics for all %d pods: %v (last: %s)", len(pods), ctx.Err(), last)
		case <-time.After(time.Second):
		}
	}
	t.Logf("metrics-server served all pods' metrics %s after its start", time.Since(begin).Round(100*time.Millisecond))

	want := map[string]usagePod{}
	for _, p := range pods {
		want[p.name] = p
	}
	for _, pm := range podList.Items {
		p := want[pm.Name]
		if len(pm.Containers) != len(p.containers) {
			t.Errorf("pod %s: %d containers, want %d", pm.Name, len(pm.Containers), len(p.containers))
		}
		for _, cm := range pm.Containers {
			wantCPU, wantMem := resource.MustParse(p.cpu), resource.MustParse(p.memory)
			gotCPU := cm.Usage.Cpu().AsApproximateFloat64()
			if math.Abs(gotCPU-wantCPU.AsApproximateFloat64()) > 0.05*wantCPU.AsApproximateFloat64() {
				t.Errorf("pod %s container %s: cpu %s, want %s", pm.Name, cm.Name, cm.Usage.Cpu(), p.cpu)
			}
			if cm.Usage.Memory().Value() != wantMem.Value() {
				t.Errorf("pod %s container %s: memory %s, want %s", pm.Name, cm.Name, cm.Usage.Memory(), p.memory)
			}
		}
	}

	// metrics-server's kubelet client presents the kubeconfig's client
	// certificate, as to a real kubelet.
	seen, _ := c.KubeletProxy().LastRequest(pods[0].node)
	if seen.Path != "/metrics/resource" || !strings.Contains(seen.ClientCertSubject, "CN=admin") {
		t.Errorf("last request to node %s: %+v, want /metrics/resource with the admin client certificate", pods[0].node, seen)
	}

	var nodeList metricsv1beta1.NodeMetricsList
	code, body := get(ctx, t, client, base+"/nodes", "")
	if err := json.Unmarshal([]byte(body), &nodeList); code != http.StatusOK || err != nil || len(nodeList.Items) != nodes {
		t.Errorf("nodes: %d %v: %d nodes, want %d\n%s", code, err, len(nodeList.Items), nodes, body)
	}
	if rss, err := processRSS(srv.PID()); err == nil {
		t.Logf("metrics-server RSS %.1f MiB", float64(rss)/(1<<20))
	}
}

// processRSS reads a process' resident set size from /proc.
func processRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// TestKubeletProxyScale measures the harness at scale: how long N nodes and
// 10 pods each take to create, and what scraping every node through the
// KubeletProxy costs kwok and this process (proxy and client together). It
// asserts only that every scrape succeeds. Set GANTRY_KUBELET_SCALE_NODES
// (e.g. 100 or 1000) to run it.
func TestKubeletProxyScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("GANTRY_KUBELET_SCALE_NODES"))
	if n <= 0 {
		t.Skip("set GANTRY_KUBELET_SCALE_NODES to the number of fake nodes to measure")
	}
	const podsPerNode = 10
	c := StartT(t, Options{KubeletMetrics: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	begin := time.Now()
	nodes, err := c.AddFakeNodes(ctx, n, "32", "256Gi")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d nodes Ready in %s", n, time.Since(begin).Round(10*time.Millisecond))
	names := make([]string, len(nodes))
	for i, fn := range nodes {
		names[i] = fn.Name
	}
	begin = time.Now()
	if err := c.AddFakePods(ctx, metav1.NamespaceDefault, names, podsPerNode, "100m", "50Mi"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pods Ready in %s", n*podsPerNode, time.Since(begin).Round(10*time.Millisecond))

	client := kubeletClient(t, c)
	client.Timeout = time.Minute // a loaded machine, not a failure
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 2
	kwokPID := c.PIDs()[Kwok]
	round := func() (time.Duration, int) {
		begin := time.Now()
		var mu sync.Mutex
		series := 0
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(32)
		for _, fn := range nodes {
			g.Go(func() error {
				req, _ := http.NewRequestWithContext(gctx, http.MethodGet, "https://"+fn.InternalIP+":"+strconv.Itoa(c.KubeletPort())+"/metrics/resource", nil)
				t0 := time.Now()
				resp, err := client.Do(req)
				if d := time.Since(t0); d > 2*time.Second {
					t.Logf("slow: %s %s", fn.Name, d)
				}
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s: %d %v", fn.Name, resp.StatusCode, err)
				}
				mu.Lock()
				series += strings.Count(string(b), "\ncontainer_cpu_usage_seconds_total{")
				mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		return time.Since(begin), series
	}
	round() // connections and kwok's per-node handlers
	const rounds, interval = 6, 10 * time.Second
	kwok0, self0 := cpuSeconds(t, kwokPID), cpuSeconds(t, os.Getpid())
	start := time.Now()
	var worst time.Duration
	for i := range rounds {
		d, series := round()
		t.Logf("round %d: %s", i, d.Round(time.Millisecond))
		worst = max(worst, d)
		if series != n*podsPerNode {
			t.Errorf("round %d: %d container series, want %d", i, series, n*podsPerNode)
		}
		time.Sleep(interval - d)
	}
	wall := time.Since(start).Seconds()
	kwokCPU, selfCPU := cpuSeconds(t, kwokPID)-kwok0, cpuSeconds(t, os.Getpid())-self0
	t.Logf("scraping %d nodes every %s: slowest round %s; kwok %.1f mCPU (%.3f per node), proxy+client %.1f mCPU (%.3f per node)",
		n, interval, worst.Round(time.Millisecond), 1000*kwokCPU/wall, 1000*kwokCPU/wall/float64(n), 1000*selfCPU/wall, 1000*selfCPU/wall/float64(n))
	if rss, err := processRSS(kwokPID); err == nil {
		t.Logf("kwok RSS %.0f MiB", float64(rss)/(1<<20))
	}
}

// cpuSeconds is a process' user+system CPU time so far, from /proc.
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}
