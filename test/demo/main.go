// Command demo is `make demo`: a local control plane, Prometheus and Gantry
// on loopback, a sample app with an HPA on a Gantry custom metric, and a
// load that rises and falls while a table shows the HPA reacting.
// Ctrl-C (or -duration) tears everything down.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/test/stack"
)

const (
	namespace = "demo"
	app       = "shop-web"
	node      = "demo-node"
	target    = 10.0 // requests per second per pod
)

// phases is the load the demo applies, in requests per second across all
// pods; the HPA should settle at ceil(load/target) replicas.
var phases = []struct {
	load float64
	dur  time.Duration
}{{8, 40 * time.Second}, {45, 70 * time.Second}, {25, 60 * time.Second}, {8, 70 * time.Second}}

func main() { os.Exit(run()) }

func run() int {
	duration := flag.Duration("duration", 20*time.Minute, "stop after this long (Ctrl-C stops earlier)")
	keep := flag.Bool("keep", false, "keep the work directory (logs, kubeconfig) after exit")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	work, err := os.MkdirTemp("", "gantry-demo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if !*keep {
		defer os.RemoveAll(work)
	}
	step := func(name string, f func() error) error {
		begin := time.Now()
		fmt.Printf("==> %s ...\n", name)
		if err := f(); err != nil {
			fmt.Printf("    failed after %s: %v\n", time.Since(begin).Round(100*time.Millisecond), err)
			return err
		}
		fmt.Printf("    done in %s\n", time.Since(begin).Round(100*time.Millisecond))
		return nil
	}

	var st *stack.Stack
	if err := step("starting etcd, kube-apiserver, kube-controller-manager, kwok, Prometheus and Gantry", func() error {
		startCtx, c := context.WithTimeout(ctx, 4*time.Minute)
		defer c()
		st, err = stack.Start(startCtx, stack.Options{WorkDir: work})
		return err
	}); err != nil {
		return 1
	}
	defer func() {
		fmt.Println("==> stopping everything")
		if err := st.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()

	client := st.Cluster.Client()
	feed := stack.NewFeeder(st.Prom, 2*time.Second)
	go feed.Run(ctx, func(err error) { fmt.Fprintln(os.Stderr, "feeder:", err) })

	if err := step("creating a fake node, the "+app+" Deployment and its HPA (target "+fmt.Sprint(target)+" req/s per pod)", func() error {
		if err := st.Cluster.AddFakeNode(ctx, node, "16", "32Gi"); err != nil {
			return err
		}
		if err := st.EnsureNamespace(ctx, namespace); err != nil {
			return err
		}
		one := int32(1)
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: namespace},
			Spec: appsv1.DeploymentSpec{
				Replicas: &one,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
					Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "web", Image: "registry.invalid/shop-web:1"}}},
				},
			},
		}
		if _, err := client.AppsV1().Deployments(namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return err
		}
		avg := resource.MustParse(fmt.Sprint(target))
		hpa := &autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: namespace},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: app},
				MinReplicas:    &one,
				MaxReplicas:    8,
				Metrics: []autoscalingv2.MetricSpec{{
					Type: autoscalingv2.PodsMetricSourceType,
					Pods: &autoscalingv2.PodsMetricSource{
						Metric: autoscalingv2.MetricIdentifier{Name: "http_requests_per_second"},
						Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: &avg},
					},
				}},
			},
		}
		_, err := client.AutoscalingV2().HorizontalPodAutoscalers(namespace).Create(ctx, hpa, metav1.CreateOptions{})
		return err
	}); err != nil {
		return 1
	}

	kc := st.Cluster.KubeconfigPath()
	fmt.Printf(`
Try it while the demo runs (kubectl is in bin/):
  export KUBECONFIG=%s
  bin/kubectl get hpa -n %s -w
  bin/kubectl get --raw "/apis/custom.metrics.k8s.io/v1beta2/namespaces/%s/pods/*/http_requests_per_second"
  bin/kubectl top pods -n %s
Gantry's log: %s
Ctrl-C stops the demo.

`, kc, namespace, namespace, namespace, st.GantryLog)
	if *keep {
		fmt.Println("work directory kept:", filepath.Clean(work))
	}

	fmt.Printf("%-9s %-10s %-14s %-8s %-8s %-8s\n", "TIME", "LOAD", "METRIC/POD", "TARGET", "DESIRED", "CURRENT")
	begin := time.Now()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		load := loadAt(time.Since(begin))
		pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err == nil && len(pods.Items) > 0 {
			per := load / float64(len(pods.Items))
			for _, p := range pods.Items {
				feed.SetRate(map[string]string{"__name__": "http_requests_total", "namespace": namespace, "pod": p.Name}, per)
			}
		}
		if h, err := client.AutoscalingV2().HorizontalPodAutoscalers(namespace).Get(ctx, app, metav1.GetOptions{}); err == nil {
			metric := "<waiting>"
			for _, m := range h.Status.CurrentMetrics {
				if m.Pods != nil && m.Pods.Current.AverageValue != nil {
					metric = fmt.Sprintf("%.2f req/s", float64(m.Pods.Current.AverageValue.MilliValue())/1000)
				}
			}
			fmt.Printf("%-9s %-10s %-14s %-8s %-8d %-8d\n", time.Since(begin).Round(time.Second), fmt.Sprintf("%.0f req/s", load), metric,
				fmt.Sprint(target), h.Status.DesiredReplicas, h.Status.CurrentReplicas)
		}
		select {
		case <-ctx.Done():
			fmt.Println()
			return 0
		case <-tick.C:
		}
	}
}

// loadAt cycles through the phases.
func loadAt(d time.Duration) float64 {
	var total time.Duration
	for _, p := range phases {
		total += p.dur
	}
	d = time.Duration(math.Mod(float64(d), float64(total)))
	for _, p := range phases {
		if d < p.dur {
			return p.load
		}
		d -= p.dur
	}
	return phases[0].load
}
