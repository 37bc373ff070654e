package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
)

const (
	statusOK   = v1alpha1.StatusOK
	statusWarn = v1alpha1.StatusWarn
	statusFail = v1alpha1.StatusFail
)

// severity orders statuses: OK < WARN < FAIL.
func severity(s v1alpha1.DiagnosisStatus) int {
	switch s {
	case statusOK:
		return 0
	case statusWarn:
		return 1
	}
	return 2
}

// report is doctor's answer; -o json prints it as it is.
type report struct {
	Kind string `json:"kind"`
	// Namespace is the scope of the HPA and MetricRule checks; empty with
	// AllNamespaces.
	Namespace     string                   `json:"namespace,omitempty"`
	AllNamespaces bool                     `json:"allNamespaces"`
	Status        v1alpha1.DiagnosisStatus `json:"status"`
	Counts        counts                   `json:"counts"`
	// Cluster are the checks of Gantry itself.
	Cluster []check `json:"cluster"`
	// HPAs has one entry per metric of every HPA in scope (and one for an
	// HPA whose explanation could not be had).
	HPAs []hpaCheck `json:"hpas"`
}

type counts struct {
	OK   int `json:"ok"`
	Warn int `json:"warn"`
	Fail int `json:"fail"`
}

// check is one cluster check.
type check struct {
	// Check is what was checked: APIService, Replicas, Config, Discovery,
	// Backend, MetricRule.
	Check string `json:"check"`
	// Subject is what it was checked on: the APIService's name, the
	// deployment, the backend, the MetricRule (namespace/name).
	Subject string                   `json:"subject"`
	Status  v1alpha1.DiagnosisStatus `json:"status"`
	Reason  string                   `json:"reason"`
	Hint    string                   `json:"hint,omitempty"`
	// MissingPermission is set when the check could not be made for a 403.
	MissingPermission string `json:"missingPermission,omitempty"`
}

// hpaCheck is one metric of one HPA.
type hpaCheck struct {
	Namespace string `json:"namespace"`
	HPA       string `json:"hpa"`
	// Metric names the metric ("Pods http_requests"); empty for an entry
	// about the HPA as a whole.
	Metric            string                   `json:"metric,omitempty"`
	Status            v1alpha1.DiagnosisStatus `json:"status"`
	Reason            string                   `json:"reason"`
	Hint              string                   `json:"hint,omitempty"`
	MissingPermission string                   `json:"missingPermission,omitempty"`
}

type doctorFlags struct {
	allNamespaces   bool
	gantryNamespace string
	gantryService   string
	// gantryChanged is whether the user named Gantry's service.
	gantryChanged bool
}

func newDoctorCommand(o *options) *cobra.Command {
	var f doctorFlags
	cmd := &cobra.Command{
		Use:   "doctor [-n NS | -A]",
		Short: "Check every HPA in scope, every metric, and Gantry itself",
		Long: `Check every metric of every HPA in the namespace (-n, or the context's) or in
all namespaces (-A): one line each, OK, WARN or FAIL with the reason. Then the
checks a platform team needs: Gantry's APIServices Available, another adapter
owning custom.metrics.k8s.io, external.metrics.k8s.io or metrics.k8s.io, Gantry's
replicas ready, its config, discovery and backends, MetricRules not Ready.

Exit status: 1 when anything FAILs, 0 otherwise (2 for a usage error).
A check you may not make (403) is a WARN naming the permission it needs;
HPAs you may not list or explain are a FAIL.`,
		Example: `  kubectl gantry doctor -n shop
  kubectl gantry doctor -A -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flag("namespace").Changed && f.allNamespaces {
				return usagef("-A and -n cannot be used together")
			}
			f.gantryChanged = cmd.Flag("gantry-namespace").Changed || cmd.Flag("gantry-service").Changed
			return o.doctor(cmd.Context(), f)
		},
	}
	fs := cmd.Flags()
	fs.BoolVarP(&f.allNamespaces, "all-namespaces", "A", false, "Check the HPAs and MetricRules of all namespaces")
	fs.StringVar(&f.gantryNamespace, "gantry-namespace", "gantry", "Namespace Gantry runs in")
	fs.StringVar(&f.gantryService, "gantry-service", "gantry", "Gantry's service (the one its APIServices point at)")
	return cmd
}

func (o *options) doctor(ctx context.Context, f doctorFlags) error {
	if err := o.validateOutput(); err != nil {
		return err
	}
	rep := report{Kind: "DoctorReport", AllNamespaces: f.allNamespaces}
	if !f.allNamespaces {
		ns, err := o.namespace()
		if err != nil {
			return failed(err)
		}
		rep.Namespace = ns
	}
	c, err := o.clients()
	if err != nil {
		return failed(err)
	}
	// One clear error for a cluster that cannot be reached, rather than
	// every check failing the same way.
	if _, err := c.kube.Discovery().ServerVersion(); err != nil {
		if _, isStatus := err.(apierrors.APIStatus); !isStatus {
			return failed(fmt.Errorf("cannot reach the kube-apiserver: %w", err))
		}
	}
	d := &doctor{c: c, f: f, ns: rep.Namespace}
	rep.Cluster = d.clusterChecks(ctx)
	rep.HPAs = d.hpaChecks(ctx)
	for _, ch := range rep.Cluster {
		rep.Counts.add(ch.Status)
	}
	for _, h := range rep.HPAs {
		rep.Counts.add(h.Status)
	}
	rep.Status = rep.Counts.worst()
	if o.output != "" {
		if err := o.print(rep); err != nil {
			return err
		}
	} else {
		r := renderer{w: o.stdout, now: o.now()}
		r.report(&rep)
		if r.err != nil {
			return failed(r.err)
		}
	}
	if rep.Status == statusFail {
		return failed(nil)
	}
	return nil
}

func (c *counts) add(s v1alpha1.DiagnosisStatus) {
	switch s {
	case statusOK:
		c.OK++
	case statusWarn:
		c.Warn++
	default:
		c.Fail++
	}
}

func (c counts) worst() v1alpha1.DiagnosisStatus {
	switch {
	case c.Fail > 0:
		return statusFail
	case c.Warn > 0:
		return statusWarn
	}
	return statusOK
}

// doctor makes the checks of one run.
type doctor struct {
	c  *clients
	f  doctorFlags
	ns string // "" for all namespaces
}

// metricsAPIServices are the APIServices Gantry's manifests register
// besides its diagnostics one.
var metricsAPIServices = []string{
	"v1beta1.custom.metrics.k8s.io",
	"v1beta2.custom.metrics.k8s.io",
	"v1beta1.external.metrics.k8s.io",
	"v1beta1.metrics.k8s.io",
}

func (d *doctor) clusterChecks(ctx context.Context) []check {
	var out []check
	services, apiErr := d.apiServices(ctx)
	if apiErr == nil {
		d.learnGantryService(services)
	}
	status, statusErr := d.status(ctx)
	switch {
	case apiErr == nil:
		out = append(out, d.apiServiceChecks(services)...)
	case statusErr == nil && len(status.APIs) > 0:
		// The user may not read APIServices, but Gantry may and says.
		out = append(out, deniedCheck("APIService", "apiservices", apiErr))
		out = append(out, apiServiceChecksFromStatus(status.APIs)...)
	default:
		out = append(out, deniedCheck("APIService", "apiservices", apiErr))
	}
	out = append(out, d.replicasCheck(ctx))
	if statusErr != nil {
		out = append(out, deniedCheck("Config", "statuses/gantry", statusErr))
	} else {
		out = append(out, statusChecks(status)...)
	}
	out = append(out, d.metricRuleChecks(ctx)...)
	return out
}

// deniedCheck is a check that could not be made: a WARN naming the
// permission for a 403, a FAIL otherwise.
func deniedCheck(what, subject string, err error) check {
	if den, ok := asDenied(err); ok {
		return check{
			Check: what, Subject: subject, Status: statusWarn,
			Reason:            "not checked: missing permission to " + den.perm.String(),
			Hint:              den.perm.hint(),
			MissingPermission: den.perm.String(),
		}
	}
	ch := check{Check: what, Subject: subject, Status: statusFail, Reason: err.Error()}
	var un *unavailableError
	if errors.As(err, &un) {
		ch.Reason = "Gantry's diagnostics API is unavailable: " + un.reason
		ch.Hint = un.hint
	}
	return ch
}

func (d *doctor) apiServices(ctx context.Context) (map[string]apiService, error) {
	list, err := d.c.dynamic.Resource(apiServicesGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, classify(fmt.Errorf("listing APIServices: %w", err), permAPIServices())
	}
	out := map[string]apiService{}
	for i := range list.Items {
		s := apiServiceFromUnstructured(&list.Items[i])
		switch s.group {
		case "custom.metrics.k8s.io", "external.metrics.k8s.io", "metrics.k8s.io", diagnosticsGroup:
			out[s.name] = s
		}
	}
	return out, nil
}

// learnGantryService takes Gantry's service from its diagnostics
// APIService when the user did not name one: only Gantry serves that group.
func (d *doctor) learnGantryService(services map[string]apiService) {
	if d.f.gantryChanged {
		return
	}
	if s, ok := services[diagnosticsAPIService]; ok && s.serviceName != "" {
		d.f.gantryNamespace, d.f.gantryService = s.serviceNamespace, s.serviceName
	}
}

func (d *doctor) gantryServiceName() string { return d.f.gantryNamespace + "/" + d.f.gantryService }

func (d *doctor) apiServiceChecks(services map[string]apiService) []check {
	names := append([]string{diagnosticsAPIService}, metricsAPIServices...)
	for name := range services {
		if !contains(names, name) {
			names = append(names, name)
		}
	}
	var out []check
	for _, name := range names {
		s, found := services[name]
		ch := check{Check: "APIService", Subject: name}
		gantrys := found && s.serviceNamespace == d.f.gantryNamespace && s.serviceName == d.f.gantryService
		owner := ""
		if found {
			owner = "the kube-apiserver itself"
			if s.serviceName != "" {
				owner = s.serviceNamespace + "/" + s.serviceName + " (" + adapterName(s.serviceNamespace+"/"+s.serviceName) + ")"
			}
		}
		switch {
		case name == diagnosticsAPIService && !found:
			ch.Status, ch.Reason = statusFail, "not registered: kubectl gantry explain and the HPA checks need it"
			ch.Hint = "apply deploy/manifests/apiservice-diagnostics.yaml, or upgrade the Helm chart"
		case !found:
			ch.Status, ch.Reason = statusWarn, "not registered: nothing serves "+strings.SplitN(name, ".", 2)[1]+"/"+strings.SplitN(name, ".", 2)[0]
			ch.Hint = "apply deploy/manifests/apiservices.yaml if Gantry should serve it"
		case !gantrys && name == diagnosticsAPIService:
			ch.Status, ch.Reason = statusFail, "points at "+owner+", not at Gantry's service "+d.gantryServiceName()
			ch.Hint = "pass --gantry-namespace and --gantry-service if Gantry runs elsewhere"
		case !gantrys:
			ch.Status = statusWarn
			ch.Reason = "served by " + owner + ", not Gantry: requests for " + s.group + " go there"
			if !s.available {
				ch.Reason += " (and it is not Available: " + s.condition() + ")"
			}
			ch.Hint = "intended? otherwise apply Gantry's APIService " + name
		case !s.available:
			ch.Status, ch.Reason = statusFail, "NOT Available: "+s.condition()
			ch.Hint = fmt.Sprintf("kubectl -n %s get pods,endpointslices; kubectl describe apiservice %s", s.serviceNamespace, name)
		default:
			ch.Status, ch.Reason = statusOK, "Available, served by Gantry ("+d.gantryServiceName()+")"
		}
		out = append(out, ch)
	}
	return out
}

// apiServiceChecksFromStatus judges the APIServices as Gantry reports them.
func apiServiceChecksFromStatus(apis []v1alpha1.APIInfo) []check {
	var out []check
	for _, a := range apis {
		ch := check{Check: "APIService", Subject: a.APIService}
		switch {
		case a.Error != "":
			ch.Status, ch.Reason = statusWarn, "Gantry could not read it: "+a.Error
		case !a.Found:
			ch.Status, ch.Reason = statusWarn, "not registered (as Gantry sees it)"
		case !a.ServedByGantry:
			ch.Status, ch.Reason = statusWarn, "served by "+a.Service+" ("+adapterName(a.Service)+"), not Gantry (as Gantry sees it)"
		case !a.Available:
			ch.Status, ch.Reason = statusFail, "NOT Available: "+strings.Trim(a.Reason+": "+a.Message, ": ")+" (as Gantry sees it)"
		default:
			ch.Status, ch.Reason = statusOK, "Available, served by Gantry (as Gantry sees it)"
		}
		out = append(out, ch)
	}
	return out
}

// replicasCheck finds the deployment behind Gantry's service and counts
// its ready replicas.
func (d *doctor) replicasCheck(ctx context.Context) check {
	ch := check{Check: "Replicas", Subject: d.gantryServiceName()}
	svc, err := d.c.kube.CoreV1().Services(d.f.gantryNamespace).Get(ctx, d.f.gantryService, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		ch.Status, ch.Reason = statusFail, "service "+d.gantryServiceName()+" not found"
		ch.Hint = "pass --gantry-namespace and --gantry-service if Gantry runs elsewhere"
		return ch
	case err != nil:
		return deniedCheck(ch.Check, ch.Subject, classify(err, permService(d.f.gantryNamespace)))
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		// A name outside the cluster: there is nothing to count, and
		// whether Gantry answers there is what the APIService checks say.
		ch.Subject = "service " + d.gantryServiceName()
		ch.Status = statusWarn
		ch.Reason = fmt.Sprintf("an ExternalName service (%s): Gantry runs outside the cluster, its replicas are not counted; the APIService checks say whether it answers", svc.Spec.ExternalName)
		return ch
	}
	if len(svc.Spec.Selector) == 0 {
		// Endpoints managed by hand (Gantry outside a deployment): count
		// the ready ones.
		return d.endpointsCheck(ctx, ch)
	}
	deps, err := d.c.kube.AppsV1().Deployments(d.f.gantryNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return deniedCheck(ch.Check, ch.Subject, classify(err, permDeployments(d.f.gantryNamespace)))
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var names []string
	var want, ready int32
	for _, dep := range deps.Items {
		if !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
			continue
		}
		names = append(names, dep.Name)
		if dep.Spec.Replicas != nil {
			want += *dep.Spec.Replicas
		} else {
			want++
		}
		ready += dep.Status.ReadyReplicas
	}
	if len(names) == 0 {
		ch.Status, ch.Reason = statusFail, fmt.Sprintf("no deployment in namespace %s runs the pods of service %s (selector %s)", d.f.gantryNamespace, d.gantryServiceName(), sel)
		return ch
	}
	ch.Subject = "deployment " + d.f.gantryNamespace + "/" + strings.Join(names, ",")
	ch.Reason = fmt.Sprintf("%d of %d replicas ready", ready, want)
	switch {
	case ready == 0:
		ch.Status = statusFail
		ch.Hint = fmt.Sprintf("kubectl -n %s describe deployment %s; kubectl -n %s logs deployment/%s", d.f.gantryNamespace, names[0], d.f.gantryNamespace, names[0])
	case ready < want:
		ch.Status = statusWarn
	default:
		ch.Status = statusOK
	}
	return ch
}

// endpointsCheck counts the ready endpoints of Gantry's service.
func (d *doctor) endpointsCheck(ctx context.Context, ch check) check {
	slices, err := d.c.kube.DiscoveryV1().EndpointSlices(d.f.gantryNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + d.f.gantryService,
	})
	if err != nil {
		return deniedCheck(ch.Check, ch.Subject, classify(err, permEndpointSlices(d.f.gantryNamespace)))
	}
	total, ready := 0, 0
	for _, sl := range slices.Items {
		for _, ep := range sl.Endpoints {
			total++
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				ready++
			}
		}
	}
	ch.Subject = "service " + d.gantryServiceName()
	ch.Reason = fmt.Sprintf("%d of %d endpoints ready (a service without a selector)", ready, total)
	switch {
	case ready == 0:
		ch.Status = statusFail
		ch.Hint = fmt.Sprintf("kubectl -n %s get endpointslices -l %s=%s", d.f.gantryNamespace, discoveryv1.LabelServiceName, d.f.gantryService)
	case ready < total:
		ch.Status = statusWarn
	default:
		ch.Status = statusOK
	}
	return ch
}

func (d *doctor) status(ctx context.Context) (*v1alpha1.GantryStatus, error) {
	body, err := d.c.getStatus(ctx)
	if err != nil {
		return nil, err
	}
	var st v1alpha1.GantryStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("decoding statuses/gantry: %w", err)
	}
	return &st, nil
}

// statusChecks are the config, discovery and backend checks from Gantry's
// own status.
func statusChecks(st *v1alpha1.GantryStatus) []check {
	cfg := check{Check: "Config", Subject: orDefault(st.Config.File, "config file")}
	rules := fmt.Sprintf("%d rules, %d external rules", st.Config.Rules, st.Config.ExternalRules)
	if st.Config.LastReloadError != "" {
		cfg.Status, cfg.Reason = statusWarn, "last reload failed, the previous config is still served ("+rules+"): "+st.Config.LastReloadError
		cfg.Hint = "fix the file; gantry check-config --config FILE shows every problem"
	} else {
		cfg.Status, cfg.Reason = statusOK, "loaded, "+rules
	}
	out := []check{cfg}

	dis := check{Check: "Discovery", Subject: "relist"}
	switch {
	case !st.Discovery.Ready:
		dis.Status, dis.Reason = statusFail, "not ready"
		if st.Discovery.Message != "" {
			dis.Reason += ": " + st.Discovery.Message
		}
	default:
		dis.Status = statusOK
		dis.Reason = fmt.Sprintf("%d custom and %d external metrics listed", st.Discovery.CustomMetrics, st.Discovery.ExternalMetrics)
	}
	out = append(out, dis)

	var up []string
	for _, b := range st.Backends {
		if b.Up {
			up = append(up, b.Name)
			continue
		}
		reason := "down"
		if b.Message != "" {
			reason += ": " + b.Message
		}
		out = append(out, check{Check: "Backend", Subject: b.Name, Status: statusFail, Reason: reason,
			Hint: "metrics from this backend cannot be served; see Gantry's log for the backend's error"})
	}
	if len(up) > 0 {
		out = append(out, check{Check: "Backend", Subject: strings.Join(up, ","), Status: statusOK, Reason: "up"})
	}
	return out
}

var metricRulesGVR = schema.GroupVersionResource{Group: "gantry.dev", Version: "v1alpha1", Resource: "metricrules"}

// metricRuleChecks lists the MetricRules in scope: one line for each that
// is not Ready, one for all that are.
func (d *doctor) metricRuleChecks(ctx context.Context) []check {
	list, err := d.c.dynamic.Resource(metricRulesGVR).Namespace(d.ns).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return []check{{Check: "MetricRule", Subject: "metricrules.gantry.dev", Status: statusOK, Reason: "CRD not installed: no MetricRules to check"}}
	case err != nil:
		return []check{deniedCheck("MetricRule", "metricrules.gantry.dev", classify(err, permMetricRules(d.ns)))}
	}
	var out []check
	ready := 0
	for i := range list.Items {
		ch, ok := metricRuleCheck(&list.Items[i])
		if ok {
			ready++
			continue
		}
		out = append(out, ch)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Subject < out[j].Subject })
	switch {
	case len(list.Items) == 0:
		out = append(out, check{Check: "MetricRule", Subject: "metricrules.gantry.dev", Status: statusOK, Reason: "none in scope"})
	case ready > 0:
		out = append(out, check{Check: "MetricRule", Subject: "metricrules.gantry.dev", Status: statusOK,
			Reason: fmt.Sprintf("%d of %d Ready", ready, len(list.Items))})
	}
	return out
}

// metricRuleCheck judges one MetricRule; ok when it is Ready at its
// current generation.
func metricRuleCheck(u *unstructured.Unstructured) (check, bool) {
	ch := check{Check: "MetricRule", Subject: u.GetNamespace() + "/" + u.GetName()}
	observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	message, _, _ := unstructured.NestedString(u.Object, "status", "message")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	cond := func(t string) (status, reason, msg string) {
		for _, c := range conds {
			m, ok := c.(map[string]any)
			if ok && m["type"] == t {
				status, _ = m["status"].(string)
				reason, _ = m["reason"].(string)
				msg, _ = m["message"].(string)
				return
			}
		}
		return "", "", ""
	}
	withMessage := func(s, msg string) string {
		if msg == "" {
			msg = message
		}
		if msg != "" {
			return s + ": " + msg
		}
		return s
	}
	accStatus, accReason, accMsg := cond("Accepted")
	readyStatus, readyReason, readyMsg := cond("Ready")
	switch {
	case observed < u.GetGeneration() || readyStatus == "":
		ch.Status = statusWarn
		ch.Reason = fmt.Sprintf("not yet processed by Gantry (generation %d, observed %d)", u.GetGeneration(), observed)
		ch.Hint = "is Gantry running with --metricrules? kubectl gantry doctor shows its replicas"
	case accStatus == "False":
		ch.Status = statusFail
		ch.Reason = withMessage("rejected ("+accReason+")", accMsg)
		ch.Hint = fmt.Sprintf("kubectl -n %s describe metricrule %s", u.GetNamespace(), u.GetName())
	case readyStatus != "True":
		ch.Status = statusWarn
		if readyReason == "DiscoveryFailed" {
			ch.Status = statusFail
		}
		ch.Reason = withMessage("not Ready ("+readyReason+")", readyMsg)
		ch.Hint = fmt.Sprintf("kubectl -n %s describe metricrule %s", u.GetNamespace(), u.GetName())
	default:
		return ch, true
	}
	return ch, false
}

// hpaConcurrency bounds the explanations asked for at once: each may run
// a backend query on Gantry.
const hpaConcurrency = 4

func (d *doctor) hpaChecks(ctx context.Context) []hpaCheck {
	hpas, err := d.c.kube.AutoscalingV2().HorizontalPodAutoscalers(d.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		err = classify(err, permHPAList(d.ns))
		ch := hpaCheck{Namespace: d.ns, Status: statusFail, Reason: "cannot list HPAs: " + err.Error()}
		if den, ok := asDenied(err); ok {
			ch.Reason = "cannot list HPAs: missing permission to " + den.perm.String()
			ch.Hint = den.perm.hint()
			ch.MissingPermission = den.perm.String()
		}
		return []hpaCheck{ch}
	}
	items := hpas.Items
	sort.Slice(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		return items[i].Name < items[j].Name
	})
	// Each goroutine writes its own element.
	results := make([][]hpaCheck, len(items))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(hpaConcurrency)
	for i := range items {
		ns, name := items[i].Namespace, items[i].Name
		g.Go(func() error {
			results[i] = d.hpaCheck(gctx, ns, name)
			return nil
		})
	}
	_ = g.Wait() // hpaCheck reports its errors as checks
	var out []hpaCheck
	for _, r := range results {
		out = append(out, r...)
	}
	return out
}

// hpaCheck turns one HPA's explanation into one entry per metric.
func (d *doctor) hpaCheck(ctx context.Context, ns, name string) []hpaCheck {
	explainHint := fmt.Sprintf("kubectl gantry explain hpa %s -n %s", name, ns)
	body, err := d.c.getHPAExplanation(ctx, ns, name)
	if err != nil {
		ch := hpaCheck{Namespace: ns, HPA: name, Status: statusFail, Reason: "cannot explain: " + err.Error()}
		var un *unavailableError
		if den, ok := asDenied(err); ok {
			ch.Reason = "cannot explain: missing permission to " + den.perm.String()
			ch.Hint = den.perm.hint()
			ch.MissingPermission = den.perm.String()
		} else if errors.As(err, &un) {
			ch.Reason = "cannot explain: Gantry's diagnostics API is unavailable: " + un.reason
			ch.Hint = un.hint
		}
		return []hpaCheck{ch}
	}
	var e v1alpha1.HPAExplanation
	if err := json.Unmarshal(body, &e); err != nil {
		return []hpaCheck{{Namespace: ns, HPA: name, Status: statusFail, Reason: "cannot decode its explanation: " + err.Error()}}
	}
	var out []hpaCheck
	worst := -1
	for _, m := range e.Metrics {
		ch := hpaCheck{Namespace: ns, HPA: name, Metric: metricTitle(m.Request), Status: m.Diagnosis.Status, Reason: m.Diagnosis.Reason, Hint: m.Diagnosis.Hint}
		if ch.Status == "" {
			ch.Status = statusWarn
			ch.Reason = orDefault(ch.Reason, "Gantry gave no diagnosis")
		}
		if ch.Status != statusOK {
			ch.Hint = strings.TrimSpace(strings.TrimSuffix(ch.Hint, ".") + "; " + explainHint)
			ch.Hint = strings.TrimPrefix(ch.Hint, "; ")
		}
		worst = max(worst, severity(ch.Status))
		out = append(out, ch)
	}
	// A problem of the HPA itself (no metrics, its scale target) is worse
	// than any metric's: give it its own line.
	if len(out) == 0 || severity(e.Diagnosis.Status) > worst {
		ch := hpaCheck{Namespace: ns, HPA: name, Status: e.Diagnosis.Status, Reason: e.Diagnosis.Reason, Hint: e.Diagnosis.Hint}
		if ch.Status == "" {
			ch.Status = statusOK
		}
		if ch.Reason == "" {
			ch.Reason = "no metrics"
		}
		out = append(out, ch)
	}
	return out
}

// metricTitle names a metric of an HPA without its namespace.
func metricTitle(q v1alpha1.MetricRequest) string {
	q.Namespace = ""
	return requestTitle(q)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
