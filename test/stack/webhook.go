package stack

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/gantry-dev/gantry/deploy"
)

// MetricRuleGVR is the MetricRule resource the stack's cluster serves.
var MetricRuleGVR = schema.GroupVersionResource{Group: "gantry.dev", Version: "v1alpha1", Resource: "metricrules"}

// webhookDenied is how the kube-apiserver reports a denial by Gantry's
// webhook (its name in deploy/manifests/metricrules-webhook.yaml).
const webhookDenied = `admission webhook "metricrules.gantry.dev" denied the request`

// RegisterWebhook registers the MetricRule validating webhook of
// deploy/manifests, pointing at Gantry's port on loopback
// (https://127.0.0.1:<port>/validate-metricrules, trusted with Gantry's
// serving CA: the stack's Service proxies nothing). It returns once the
// kube-apiserver calls it: a dry-run create of a MetricRule whose
// metricsQuery does not parse is denied by Gantry. Gantry must serve the
// webhook (--metricrules, the default).
func (st *Stack) RegisterWebhook(ctx context.Context) error {
	if st.servedPort == 0 {
		return errors.New("stack: gantry was never started")
	}
	objs, err := deploy.Objects()
	if err != nil {
		return err
	}
	var wc *admissionregistrationv1.ValidatingWebhookConfiguration
	for _, o := range objs {
		if o.GetKind() == "ValidatingWebhookConfiguration" && o.GetName() == deploy.Webhook {
			wc = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, wc); err != nil {
				return fmt.Errorf("stack: %s: %w", deploy.Webhook, err)
			}
		}
	}
	if wc == nil {
		return fmt.Errorf("stack: no ValidatingWebhookConfiguration %s in deploy/manifests", deploy.Webhook)
	}
	url := "https://127.0.0.1:" + strconv.Itoa(st.servedPort) + deploy.WebhookPath
	for i := range wc.Webhooks {
		wc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: st.caPEM}
	}
	client := st.Cluster.Client().AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := client.Create(ctx, wc, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		old, err := client.Get(ctx, wc.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("stack: registering the MetricRule webhook: %w", err)
		}
		wc.ResourceVersion = old.ResourceVersion
		if _, err := client.Update(ctx, wc, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("stack: registering the MetricRule webhook: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("stack: registering the MetricRule webhook: %w", err)
	}
	begin := time.Now()
	if err := st.waitWebhook(ctx, true); err != nil {
		return err
	}
	st.opts.Logf("stack: MetricRule webhook %s registered and called in %s", url, time.Since(begin).Round(10*time.Millisecond))
	return nil
}

// RemoveWebhook unregisters the MetricRule webhook, as when Gantry is
// unreachable: MetricRules are then admitted on the CRD's schema alone. It
// returns once the kube-apiserver no longer calls it.
func (st *Stack) RemoveWebhook(ctx context.Context) error {
	err := st.Cluster.Client().AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, deploy.Webhook, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("stack: removing the MetricRule webhook: %w", err)
	}
	return st.waitWebhook(ctx, false)
}

// waitWebhook dry-runs the create of a MetricRule that the CRD's schema
// accepts and Gantry's webhook refuses (its metricsQuery does not parse)
// until the kube-apiserver denies it (called) or admits it (not called).
func (st *Stack) waitWebhook(ctx context.Context, called bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dyn, err := dynamic.NewForConfig(st.Cluster.RESTConfig())
	if err != nil {
		return err
	}
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gantry.dev/v1alpha1",
		"kind":       "MetricRule",
		"metadata":   map[string]any{"name": "stack-webhook-probe", "namespace": "default"},
		"spec": map[string]any{"rules": []any{map[string]any{
			"seriesQuery":  `http_requests_total{pod!=""}`,
			"metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}",
		}}},
	}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		_, err := dyn.Resource(MetricRuleGVR).Namespace("default").Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		denied := err != nil && strings.Contains(err.Error(), webhookDenied)
		switch {
		case denied == called && (denied || err == nil):
			return nil
		case err != nil && !denied:
			last = err
		}
		select {
		case <-ctx.Done():
			if called {
				return fmt.Errorf("stack: the kube-apiserver does not call Gantry's MetricRule webhook: a MetricRule with a broken metricsQuery is still admitted (last error: %v)", last)
			}
			return fmt.Errorf("stack: the kube-apiserver still calls the removed MetricRule webhook (last error: %v)", last)
		case <-tick.C:
		}
	}
}
