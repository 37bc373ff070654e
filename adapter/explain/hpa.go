package explain

import (
	"context"
	"fmt"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// HPA explains every metric of the HPA namespace/name. The error is the
// API's (NotFound when there is no such HPA).
func (e *Explainer) HPA(ctx context.Context, namespace, name string) (*v1alpha1.HPAExplanation, error) {
	hpa, err := e.opts.Cluster.HPA(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	out := &v1alpha1.HPAExplanation{HPA: summary(hpa)}
	out.Kind, out.APIVersion = v1alpha1.KindHPAExplanation, v1alpha1.SchemeGroupVersion.String()
	out.Name, out.Namespace = name, namespace

	sel, selErr := e.opts.Cluster.ScaleSelector(ctx, namespace, hpa.Spec.ScaleTargetRef)
	if selErr != nil {
		out.HPA.SelectorError = selErr.Error()
	} else {
		out.HPA.Selector = sel.String()
	}
	var pods podCounts
	if sel != nil {
		if list, err := e.opts.Cluster.Pods(ctx, namespace, sel); err == nil {
			pods = countPods(list)
		}
	}
	tol := tolerances(hpa)
	current := hpa.Status.CurrentReplicas

	var proposed *int32
	out.Diagnosis = ok(fmt.Sprintf("all %d metrics are served", len(hpa.Spec.Metrics)))
	for i, spec := range hpa.Spec.Metrics {
		ex := e.hpaMetric(ctx, namespace, spec, sel, selErr, pods, current, tol, hpa.Status.CurrentMetrics)
		if ex.HPA != nil && ex.HPA.Replicas != nil && (proposed == nil || *ex.HPA.Replicas > *proposed) {
			p := *ex.HPA.Replicas
			proposed = &p
		}
		if worse(ex.Diagnosis, out.Diagnosis) {
			out.Diagnosis = ex.Diagnosis
			out.Diagnosis.Reason = fmt.Sprintf("metrics[%d] (%s %s): %s", i, ex.Request.Type, ex.Request.Metric, ex.Diagnosis.Reason)
		}
		out.Metrics = append(out.Metrics, ex)
	}
	if len(hpa.Spec.Metrics) == 0 {
		out.Diagnosis = warn("the HPA has no metrics (it scales on 80% CPU by default)", "")
	}
	if proposed != nil {
		minR := int32(1)
		if hpa.Spec.MinReplicas != nil {
			minR = *hpa.Spec.MinReplicas
		}
		rc := &v1alpha1.ReplicaComputation{Proposed: *proposed, Bounded: min(max(*proposed, minR), hpa.Spec.MaxReplicas), HPADesired: hpa.Status.DesiredReplicas}
		if rc.Bounded != rc.HPADesired {
			rc.Note = "the HPA's desiredReplicas differs: its scale-down stabilization window, scaling policies or an older evaluation explain the difference"
		}
		out.Replicas = rc
	}
	for _, c := range hpa.Status.Conditions {
		if c.Type == autoscalingv2.ScalingActive && c.Status == corev1.ConditionFalse && out.Diagnosis.Status == v1alpha1.StatusOK {
			out.Diagnosis = warn(fmt.Sprintf("the HPA reports ScalingActive=False (%s): %s", c.Reason, c.Message), "the HPA controller may not have evaluated since the problem was fixed; it does every 15s")
		}
	}
	return out, nil
}

// hpaMetric explains one entry of an HPA's spec.metrics and computes what
// the HPA controller does with its value.
func (e *Explainer) hpaMetric(ctx context.Context, namespace string, spec autoscalingv2.MetricSpec, sel labels.Selector, selErr error, pods podCounts, current int32, tol Tolerances, status []autoscalingv2.MetricStatus) v1alpha1.Explanation {
	ask := Ask{Type: string(spec.Type), Namespace: namespace}
	var target autoscalingv2.MetricTarget
	switch spec.Type {
	case autoscalingv2.PodsMetricSourceType:
		ask.Metric, ask.Resource, ask.Selector = spec.Pods.Metric.Name, rules.Pods, sel
		ask.MetricSelector = metricSelector(spec.Pods.Metric.Selector)
		target = spec.Pods.Target
	case autoscalingv2.ObjectMetricSourceType:
		ask.Metric, ask.Object = spec.Object.Metric.Name, spec.Object.DescribedObject.Name
		ask.MetricSelector = metricSelector(spec.Object.Metric.Selector)
		ask.Resource = e.resourceOf(spec.Object.DescribedObject)
		target = spec.Object.Target
	case autoscalingv2.ExternalMetricSourceType:
		ask.Metric = spec.External.Metric.Name
		ask.MetricSelector = metricSelector(spec.External.Metric.Selector)
		target = spec.External.Target
	case autoscalingv2.ResourceMetricSourceType:
		return e.resourceMetric(ctx, namespace, string(spec.Resource.Name), "", spec.Resource.Target, sel, current, tol, status)
	case autoscalingv2.ContainerResourceMetricSourceType:
		return e.resourceMetric(ctx, namespace, string(spec.ContainerResource.Name), spec.ContainerResource.Container, spec.ContainerResource.Target, sel, current, tol, status)
	default:
		return v1alpha1.Explanation{Request: v1alpha1.MetricRequest{Type: string(spec.Type)}, Diagnosis: fail(fmt.Sprintf("unknown metric type %q", spec.Type), "")}
	}
	if ask.Type == v1alpha1.MetricTypePods && sel == nil {
		ex := v1alpha1.Explanation{Request: request(ask), API: e.api(ctx, ask.Type)}
		ex.Diagnosis = fail(fmt.Sprintf("cannot read the scale target's pod selector: %v", selErr), "the HPA controller cannot either: check scaleTargetRef")
		return ex
	}
	ex, res := e.explain(ctx, ask)
	comp := &v1alpha1.HPAComputation{TargetType: string(target.Type), Tolerance: tol.Up, CurrentReplicas: current, ReadyPods: pods.ready}
	comp.Target = targetString(target)
	comp.HPACurrent = hpaCurrent(status, spec)
	ex.HPA = comp
	if !res.found {
		return ex
	}
	var p Proposal
	switch {
	case ask.Type == v1alpha1.MetricTypePods && target.AverageValue != nil:
		var values []int64
		missing := 0
		for _, name := range pods.live {
			if v, ok := res.values[name]; ok {
				values = append(values, v)
			} else {
				missing++
			}
		}
		if len(values) == 0 {
			comp.Note = "no running pod of the scale target has a value; the HPA controller fails"
			return ex
		}
		p = PodsAverage(values, missing, target.AverageValue.MilliValue(), current, tol)
		comp.Current = milliQuantity(p.Usage)
		if missing > 0 {
			comp.Note = fmt.Sprintf("%d ready pods without a value are assumed at the target (scale-down) or 0 (scale-up), as the HPA controller does", missing)
		}
	case target.Type == autoscalingv2.ValueMetricType && target.Value != nil:
		p = Value(res.total, target.Value.MilliValue(), current, pods.ready, tol)
		comp.Current = milliQuantity(p.Usage)
	case target.Type == autoscalingv2.AverageValueMetricType && target.AverageValue != nil:
		p = AverageValue(res.total, target.AverageValue.MilliValue(), current, tol)
		comp.Current = milliQuantity(p.Usage)
	default:
		comp.Note = fmt.Sprintf("target type %q does not apply to a %s metric", target.Type, ask.Type)
		ex.Diagnosis = fail(comp.Note, "")
		return ex
	}
	ratio := p.Ratio
	comp.Ratio, comp.WithinTolerance = &ratio, p.Within
	r := p.Replicas
	comp.Replicas = &r
	return ex
}

// resourceMetric explains a Resource or ContainerResource metric: served
// by metrics.k8s.io, computed by the HPA from pod requests; the current
// value is the HPA's own.
func (e *Explainer) resourceMetric(ctx context.Context, namespace, name, container string, target autoscalingv2.MetricTarget, sel labels.Selector, current int32, tol Tolerances, status []autoscalingv2.MetricStatus) v1alpha1.Explanation {
	typ := v1alpha1.MetricTypeResource
	if container != "" {
		typ = v1alpha1.MetricTypeContainerResource
	}
	ex := v1alpha1.Explanation{Request: v1alpha1.MetricRequest{Type: typ, Metric: name, Namespace: namespace, Resource: "pods", Container: container,
		Path: fmt.Sprintf("/apis/metrics.k8s.io/v1beta1/namespaces/%s/pods", namespace)}}
	if sel != nil {
		ex.Request.LabelSelector = sel.String()
	}
	ex.API = e.api(ctx, typ)
	comp := &v1alpha1.HPAComputation{TargetType: string(target.Type), Target: targetString(target), Tolerance: tol.Up, CurrentReplicas: current}
	ex.HPA = comp
	for _, st := range status {
		var cur *autoscalingv2.MetricValueStatus
		switch {
		case st.Resource != nil && container == "" && string(st.Resource.Name) == name:
			cur = &st.Resource.Current
		case st.ContainerResource != nil && st.ContainerResource.Container == container && string(st.ContainerResource.Name) == name:
			cur = &st.ContainerResource.Current
		}
		if cur == nil {
			continue
		}
		var p Proposal
		switch {
		case target.Type == autoscalingv2.UtilizationMetricType && cur.AverageUtilization != nil && target.AverageUtilization != nil:
			comp.HPACurrent = fmt.Sprintf("%d%%", *cur.AverageUtilization)
			ratio := float64(*cur.AverageUtilization) / float64(*target.AverageUtilization)
			p = Proposal{Ratio: ratio, Within: tol.Within(ratio), Replicas: current}
			if !p.Within {
				p.Replicas = ceil(ratio * float64(current))
			}
		case cur.AverageValue != nil && target.AverageValue != nil:
			comp.HPACurrent = cur.AverageValue.String()
			p = PodsAverage([]int64{cur.AverageValue.MilliValue()}, 0, target.AverageValue.MilliValue(), current, tol)
			if !p.Within {
				p.Replicas = ceil(p.Ratio * float64(current))
			}
		default:
			continue
		}
		comp.Current = comp.HPACurrent
		ratio := p.Ratio
		comp.Ratio, comp.WithinTolerance = &ratio, p.Within
		r := p.Replicas
		comp.Replicas = &r
		comp.Note = "computed from the HPA's own current value over its current replicas (Gantry does not read pod requests)"
	}
	switch {
	case ex.API.Error == "" && !ex.API.Found:
		ex.Diagnosis = fail(fmt.Sprintf("APIService %s does not exist: nothing serves resource metrics", ex.API.APIService), "run Gantry with --resource-metrics (or metrics-server)")
	case !ex.API.Available && ex.API.Error == "":
		ex.Diagnosis, _ = apiDown(ex.API)
	case comp.Replicas == nil:
		ex.Diagnosis = warn(fmt.Sprintf("the HPA reports no current value for %s", name), "the HPA controller may not have read it yet, or pods lack resource requests")
	default:
		ex.Diagnosis = ok(fmt.Sprintf("%s is served by %s; the HPA reads %s", name, ex.API.APIService, comp.HPACurrent))
	}
	return ex
}

func ceil(f float64) int32 {
	i := int32(f)
	if float64(i) < f {
		i++
	}
	return i
}

// resourceOf resolves an Object metric's described object to its
// group-resource, as the HPA controller's REST mapping does.
func (e *Explainer) resourceOf(ref autoscalingv2.CrossVersionObjectReference) schema.GroupResource {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err == nil && e.opts.Mapper != nil {
		if m, err := e.opts.Mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, gv.Version); err == nil {
			return m.Resource.GroupResource()
		}
	}
	return schema.GroupResource{Group: gv.Group, Resource: strings.ToLower(ref.Kind) + "s"}
}

func summary(hpa *autoscalingv2.HorizontalPodAutoscaler) v1alpha1.HPASummary {
	s := v1alpha1.HPASummary{ScaleTargetRef: hpa.Spec.ScaleTargetRef, MaxReplicas: hpa.Spec.MaxReplicas, MinReplicas: 1,
		CurrentReplicas: hpa.Status.CurrentReplicas, DesiredReplicas: hpa.Status.DesiredReplicas, LastScaleTime: hpa.Status.LastScaleTime, Conditions: hpa.Status.Conditions}
	if hpa.Spec.MinReplicas != nil {
		s.MinReplicas = *hpa.Spec.MinReplicas
	}
	return s
}

func tolerances(hpa *autoscalingv2.HorizontalPodAutoscaler) Tolerances {
	t := Tolerances{Down: DefaultTolerance, Up: DefaultTolerance}
	if b := hpa.Spec.Behavior; b != nil {
		if b.ScaleDown != nil && b.ScaleDown.Tolerance != nil {
			t.Down = b.ScaleDown.Tolerance.AsApproximateFloat64()
		}
		if b.ScaleUp != nil && b.ScaleUp.Tolerance != nil {
			t.Up = b.ScaleUp.Tolerance.AsApproximateFloat64()
		}
	}
	return t
}

// podCounts are the scale target's pods as the HPA controller counts them:
// live are those not being deleted and not failed (a Pods metric's pods:
// those without a value are missing), ready counts the live pods that are
// Ready (what an Object or External Value target is applied to).
type podCounts struct {
	live  []string
	ready int32
}

func countPods(pods []corev1.Pod) podCounts {
	var out podCounts
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out.live = append(out.live, p.Name)
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				out.ready++
				break
			}
		}
	}
	return out
}

func metricSelector(ls *metav1.LabelSelector) labels.Selector {
	if ls == nil {
		return labels.Everything()
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return labels.Everything()
	}
	return sel
}

func targetString(t autoscalingv2.MetricTarget) string {
	switch {
	case t.AverageUtilization != nil:
		return fmt.Sprintf("%d%%", *t.AverageUtilization)
	case t.AverageValue != nil:
		return qs(t.AverageValue)
	case t.Value != nil:
		return qs(t.Value)
	}
	return ""
}

func qs(q *resource.Quantity) string { return q.String() }

// hpaCurrent is the current value the HPA's status reports for spec.
func hpaCurrent(status []autoscalingv2.MetricStatus, spec autoscalingv2.MetricSpec) string {
	for _, st := range status {
		if st.Type != spec.Type {
			continue
		}
		var name string
		var cur autoscalingv2.MetricValueStatus
		switch {
		case st.Pods != nil && spec.Pods != nil:
			name, cur = st.Pods.Metric.Name, st.Pods.Current
			if name != spec.Pods.Metric.Name {
				continue
			}
		case st.Object != nil && spec.Object != nil:
			name, cur = st.Object.Metric.Name, st.Object.Current
			if name != spec.Object.Metric.Name || st.Object.DescribedObject.Name != spec.Object.DescribedObject.Name {
				continue
			}
		case st.External != nil && spec.External != nil:
			name, cur = st.External.Metric.Name, st.External.Current
			if name != spec.External.Metric.Name {
				continue
			}
		default:
			continue
		}
		switch {
		case cur.AverageValue != nil:
			return cur.AverageValue.String()
		case cur.Value != nil:
			return cur.Value.String()
		}
	}
	return ""
}
