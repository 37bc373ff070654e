// Package codec writes the metric value lists Gantry serves to JSON clients
// (kubectl, dashboards, pollers; kube-controller-manager's HPA controller
// asks for protobuf) without reflection, and leaves every other object and
// media type to the API machinery's own serializers.
//
// The output is byte for byte what the API machinery's JSON serializer writes
// (the tests compare the two on generated lists), so clients cannot tell the
// difference; at 1,000 pods it costs a fraction of the reflective encoder's
// CPU and allocations (BenchmarkEncode).
package codec

import (
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	cmv1beta1 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta1"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	corev1 "k8s.io/api/core/v1"
)

// Negotiated returns ns with its compact JSON serializer replaced by one
// that writes metric value lists itself. Pretty output, YAML, protobuf and
// every other type go to ns's serializers unchanged.
func Negotiated(ns runtime.NegotiatedSerializer) runtime.NegotiatedSerializer {
	infos := append([]runtime.SerializerInfo(nil), ns.SupportedMediaTypes()...)
	for i := range infos {
		if infos[i].MediaType == runtime.ContentTypeJSON && infos[i].Serializer != nil {
			infos[i].Serializer = &serializer{Serializer: infos[i].Serializer}
		}
	}
	return negotiated{NegotiatedSerializer: ns, infos: infos}
}

type negotiated struct {
	runtime.NegotiatedSerializer
	infos []runtime.SerializerInfo
}

func (n negotiated) SupportedMediaTypes() []runtime.SerializerInfo { return n.infos }

// serializer decodes with the wrapped serializer and encodes metric value
// lists itself.
type serializer struct {
	runtime.Serializer
}

// Identifier differs from the wrapped serializer's, so that serializations
// cached per encoder are never shared between the two.
func (s *serializer) Identifier() runtime.Identifier {
	return s.Serializer.Identifier() + runtime.Identifier(`+gantry-metric-lists`)
}

// buffers keeps encoding buffers between requests: an answer for 1,000
// pods is ≈ 230 KB, and growing a fresh buffer to that size for every
// request costs more than the encoding itself.
var buffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooled bounds what a pooled buffer may keep: a rare huge answer should
// not pin its memory.
const maxPooled = 4 << 20

func (s *serializer) Encode(obj runtime.Object, w io.Writer) error {
	bp := buffers.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxPooled {
			buffers.Put(bp)
		}
	}()
	b, ok := Append((*bp)[:0], obj)
	if !ok {
		return s.Serializer.Encode(obj, w)
	}
	*bp = b
	_, err := w.Write(b)
	return err
}

// Append appends obj's JSON encoding and a newline, as the API machinery's
// JSON serializer writes it, to b. It reports false, with b unchanged, for a
// type it does not write: the caller encodes those the usual way.
func Append(b []byte, obj runtime.Object) ([]byte, bool) {
	e := encoder{b: b}
	var ok bool
	switch l := obj.(type) {
	case *cmv1beta2.MetricValueList:
		ok = list(&e, l.TypeMeta, l.ListMeta, l.Items, e.v1beta2)
	case *cmv1beta1.MetricValueList:
		ok = list(&e, l.TypeMeta, l.ListMeta, l.Items, e.v1beta1)
	case *emv1beta1.ExternalMetricValueList:
		ok = list(&e, l.TypeMeta, l.ListMeta, l.Items, e.external)
	}
	if !ok || e.failed {
		return b, false
	}
	return e.b, true
}

// list writes a list whose items item writes. It reports false for list
// metadata it leaves to the reflective encoder.
func list[T any](e *encoder, t metav1.TypeMeta, m metav1.ListMeta, items []T, item func(*T)) bool {
	if !plainList(m) {
		return false
	}
	e.listHead(t, items == nil)
	for i := range items {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		item(&items[i])
	}
	e.listTail(items == nil)
	return true
}

// plainList: list metadata as the metric APIs send it (none). Anything else
// is rare enough to leave to the reflective encoder.
func plainList(m metav1.ListMeta) bool {
	return m.SelfLink == "" && m.ResourceVersion == "" && m.Continue == "" && m.RemainingItemCount == nil
}

type encoder struct {
	b      []byte
	failed bool

	// Items of one answer nearly always share a timestamp: format it once.
	lastTime time.Time
	lastTS   []byte
}

// listHead writes everything up to the first item, listTail the rest. The
// reflective encoder writes a nil item slice as null, so these do too.
func (e *encoder) listHead(t metav1.TypeMeta, nilItems bool) {
	e.b = append(e.b, '{')
	e.typeMeta(t)
	e.b = append(e.b, `"metadata":{},"items":`...)
	if nilItems {
		e.b = append(e.b, "null"...)
		return
	}
	e.b = append(e.b, '[')
}

func (e *encoder) listTail(nilItems bool) {
	if !nilItems {
		e.b = append(e.b, ']')
	}
	e.b = append(e.b, "}\n"...)
}

// typeMeta writes kind and apiVersion, each omitted when empty, with their
// trailing commas: every object here has fields after them.
func (e *encoder) typeMeta(t metav1.TypeMeta) {
	if t.Kind != "" {
		e.b = append(e.b, `"kind":`...)
		e.str(t.Kind)
		e.b = append(e.b, ',')
	}
	if t.APIVersion != "" {
		e.b = append(e.b, `"apiVersion":`...)
		e.str(t.APIVersion)
		e.b = append(e.b, ',')
	}
}

func (e *encoder) v1beta2(v *cmv1beta2.MetricValue) {
	e.b = append(e.b, '{')
	e.typeMeta(v.TypeMeta)
	e.describedObject(&v.DescribedObject)
	e.b = append(e.b, `,"metric":{"name":`...)
	e.str(v.Metric.Name)
	e.b = append(e.b, `,"selector":`...)
	e.selector(v.Metric.Selector)
	e.b = append(e.b, '}')
	e.tail(v.Timestamp, v.WindowSeconds, "windowSeconds", &v.Value)
	e.b = append(e.b, '}')
}

func (e *encoder) v1beta1(v *cmv1beta1.MetricValue) {
	e.b = append(e.b, '{')
	e.typeMeta(v.TypeMeta)
	e.describedObject(&v.DescribedObject)
	e.b = append(e.b, `,"metricName":`...)
	e.str(v.MetricName)
	e.tail(v.Timestamp, v.WindowSeconds, "window", &v.Value)
	e.b = append(e.b, `,"selector":`...)
	e.selector(v.Selector)
	e.b = append(e.b, '}')
}

func (e *encoder) external(v *emv1beta1.ExternalMetricValue) {
	e.b = append(e.b, '{')
	e.typeMeta(v.TypeMeta)
	e.b = append(e.b, `"metricName":`...)
	e.str(v.MetricName)
	e.b = append(e.b, `,"metricLabels":`...)
	if v.MetricLabels == nil {
		e.b = append(e.b, "null"...)
	} else {
		e.marshal(v.MetricLabels) // sorted keys, as encoding/json writes maps
	}
	e.tail(v.Timestamp, v.WindowSeconds, "window", &v.Value)
	e.b = append(e.b, '}')
}

// tail writes the timestamp, the window (omitted when nil) and the value,
// each with its leading comma.
func (e *encoder) tail(ts metav1.Time, window *int64, windowKey string, q *resource.Quantity) {
	e.b = append(e.b, `,"timestamp":`...)
	e.time(ts)
	if window != nil {
		e.b = append(e.b, ",\""...)
		e.b = append(e.b, windowKey...)
		e.b = append(e.b, "\":"...)
		e.b = strconv.AppendInt(e.b, *window, 10)
	}
	// Quantity.MarshalJSON itself: a parsed quantity may keep the string it
	// was parsed from ("1.500", "+5") and write that, not its canonical form.
	e.b = append(e.b, `,"value":`...)
	v, err := q.MarshalJSON()
	if err != nil {
		e.failed = true
		return
	}
	e.b = append(e.b, v...)
}

// describedObject writes a core/v1 ObjectReference: every field omitempty.
func (e *encoder) describedObject(r *corev1.ObjectReference) {
	e.b = append(e.b, `"describedObject":{`...)
	n := 0
	field := func(key, val string) {
		if val == "" {
			return
		}
		if n > 0 {
			e.b = append(e.b, ',')
		}
		n++
		e.b = append(e.b, '"')
		e.b = append(e.b, key...)
		e.b = append(e.b, "\":"...)
		e.str(val)
	}
	field("kind", r.Kind)
	field("namespace", r.Namespace)
	field("name", r.Name)
	field("uid", string(r.UID))
	field("apiVersion", r.APIVersion)
	field("resourceVersion", r.ResourceVersion)
	field("fieldPath", r.FieldPath)
	e.b = append(e.b, '}')
}

func (e *encoder) selector(s *metav1.LabelSelector) {
	if s == nil {
		e.b = append(e.b, "null"...)
		return
	}
	e.marshal(s)
}

// time writes a metav1.Time as its MarshalJSON does: null when zero, else
// RFC 3339 in UTC.
func (e *encoder) time(t metav1.Time) {
	if t.IsZero() {
		e.b = append(e.b, "null"...)
		return
	}
	if e.lastTS == nil || t.Time != e.lastTime {
		e.lastTime = t.Time
		e.lastTS = append(e.lastTS[:0], '"')
		e.lastTS = t.UTC().AppendFormat(e.lastTS, time.RFC3339)
		e.lastTS = append(e.lastTS, '"')
	}
	e.b = append(e.b, e.lastTS...)
}

// str writes s as a JSON string. Plain ASCII without characters that need
// escaping (names, namespaces, metric names) is copied; anything else goes
// through encoding/json, which escapes it (HTML characters included) the way
// the reflective encoder does.
func (e *encoder) str(s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			e.marshal(s)
			return
		}
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, s...)
	e.b = append(e.b, '"')
}

func (e *encoder) marshal(v any) {
	out, err := json.Marshal(v)
	if err != nil {
		e.failed = true
		return
	}
	e.b = append(e.b, out...)
}
