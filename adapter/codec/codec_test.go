package codec

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	cmv1beta1 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta1"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	cmapiserver "sigs.k8s.io/custom-metrics-apiserver/pkg/apiserver"

	genericapiserver "k8s.io/apiserver/pkg/server"
)

// reflective returns the API machinery's JSON serializer as the apiserver
// builds it for an API group, streaming collections on or off.
func reflective(streaming bool) runtime.Serializer {
	s := cmapiserver.Scheme
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s,
		json.SerializerOptions{StreamingCollectionsEncoding: streaming})
}

// gen makes values with the awkward cases mixed in: strings that need
// escaping (HTML characters, control characters, invalid UTF-8, U+2028),
// zero and non-UTC timestamps, every quantity format, nil and empty maps,
// slices and selectors, type metadata on items.
type gen struct{ r *rand.Rand }

func (g gen) str() string {
	pieces := []string{"web", "-", "pod", "0", "é", "<", ">", "&", `"`, `\`, "\n", "\t", "\x01", "\u2028", "\xff", "日本", " ", "a.b/c", "ns"}
	n := g.r.IntN(5)
	var b bytes.Buffer
	for range n {
		b.WriteString(pieces[g.r.IntN(len(pieces))])
	}
	return b.String()
}

func (g gen) plainOr(s string) string {
	if g.r.IntN(4) == 0 {
		return g.str()
	}
	return s
}

func (g gen) quantity() resource.Quantity {
	switch g.r.IntN(6) {
	case 0:
		return *resource.NewMilliQuantity(g.r.Int64N(1e12)-5e11, resource.DecimalSI)
	case 1:
		return *resource.NewQuantity(g.r.Int64N(1<<40), resource.BinarySI)
	case 2:
		return *resource.NewScaledQuantity(g.r.Int64N(1e6), resource.Scale(g.r.IntN(19)-9))
	case 3:
		s := []string{"1", "0", "1.5", "100m", "2Ki", "1e3", "12345678901234567890", "0.000001", "-3", "1.0000001", "+5", "1.500", "1E3", "0.5Gi"}
		return resource.MustParse(s[g.r.IntN(len(s))])
	case 4:
		q := resource.MustParse("1.25")
		q.Add(*resource.NewMilliQuantity(g.r.Int64N(1000), resource.DecimalSI))
		return q
	default:
		return resource.Quantity{}
	}
}

func (g gen) time() metav1.Time {
	switch g.r.IntN(5) {
	case 0:
		return metav1.Time{}
	case 1:
		return metav1.NewTime(time.Unix(g.r.Int64N(4e9), g.r.Int64N(1e9)).In(time.FixedZone("x", 3600*(g.r.IntN(25)-12))))
	default:
		return metav1.NewTime(time.Unix(1_790_000_000+int64(g.r.IntN(3)), 0))
	}
}

func (g gen) window() *int64 {
	if g.r.IntN(3) == 0 {
		return nil
	}
	w := g.r.Int64N(600) - 1
	return &w
}

func (g gen) selector() *metav1.LabelSelector {
	switch g.r.IntN(4) {
	case 0:
		return &metav1.LabelSelector{}
	case 1:
		return &metav1.LabelSelector{
			MatchLabels:      map[string]string{g.str(): g.str(), "app": "web"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", g.str()}}},
		}
	default:
		return nil
	}
}

func (g gen) typeMeta() metav1.TypeMeta {
	if g.r.IntN(5) == 0 {
		return metav1.TypeMeta{Kind: g.plainOr("MetricValue"), APIVersion: g.plainOr("custom.metrics.k8s.io/v1beta2")}
	}
	return metav1.TypeMeta{}
}

func (g gen) ref() corev1.ObjectReference {
	r := corev1.ObjectReference{Kind: "Pod", Namespace: g.plainOr("default"), Name: g.plainOr(fmt.Sprintf("web-%d", g.r.IntN(1e6))), APIVersion: "/v1"}
	if g.r.IntN(5) == 0 {
		r = corev1.ObjectReference{Kind: g.str(), Name: g.str(), UID: types.UID(g.str()), ResourceVersion: g.str(), FieldPath: g.str()}
	}
	return r
}

func (g gen) count() int {
	if g.r.IntN(6) == 0 {
		return -1 // nil items
	}
	return g.r.IntN(8)
}

func (g gen) labels() map[string]string {
	switch g.r.IntN(3) {
	case 0:
		return nil
	case 1:
		return map[string]string{}
	default:
		return map[string]string{g.str(): g.str(), "queue": g.plainOr("jobs"), "z": "1"}
	}
}

func (g gen) lists() []runtime.Object {
	var out []runtime.Object
	{
		l := &cmv1beta2.MetricValueList{TypeMeta: metav1.TypeMeta{Kind: "MetricValueList", APIVersion: "custom.metrics.k8s.io/v1beta2"}}
		if n := g.count(); n >= 0 {
			l.Items = []cmv1beta2.MetricValue{}
			for range n {
				l.Items = append(l.Items, cmv1beta2.MetricValue{TypeMeta: g.typeMeta(), DescribedObject: g.ref(),
					Metric:    cmv1beta2.MetricIdentifier{Name: g.plainOr("http_requests_per_second"), Selector: g.selector()},
					Timestamp: g.time(), WindowSeconds: g.window(), Value: g.quantity()})
			}
		}
		out = append(out, l)
	}
	{
		l := &cmv1beta1.MetricValueList{TypeMeta: metav1.TypeMeta{Kind: g.plainOr("MetricValueList"), APIVersion: "custom.metrics.k8s.io/v1beta1"}}
		if n := g.count(); n >= 0 {
			l.Items = []cmv1beta1.MetricValue{}
			for range n {
				l.Items = append(l.Items, cmv1beta1.MetricValue{TypeMeta: g.typeMeta(), DescribedObject: g.ref(),
					MetricName: g.plainOr("queue_depth"), Timestamp: g.time(), WindowSeconds: g.window(), Value: g.quantity(), Selector: g.selector()})
			}
		}
		out = append(out, l)
	}
	{
		l := &emv1beta1.ExternalMetricValueList{TypeMeta: metav1.TypeMeta{Kind: "ExternalMetricValueList", APIVersion: g.plainOr("external.metrics.k8s.io/v1beta1")}}
		if n := g.count(); n >= 0 {
			l.Items = []emv1beta1.ExternalMetricValue{}
			for range n {
				l.Items = append(l.Items, emv1beta1.ExternalMetricValue{TypeMeta: g.typeMeta(), MetricName: g.plainOr("queue_messages_ready"),
					MetricLabels: g.labels(), Timestamp: g.time(), WindowSeconds: g.window(), Value: g.quantity()})
			}
		}
		out = append(out, l)
	}
	return out
}

func TestAppendMatchesReflectiveEncoder(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(1, 2))}
	encoders := map[string]runtime.Serializer{"streaming": reflective(true), "plain": reflective(false)}
	for i := range 3000 {
		for _, obj := range g.lists() {
			got, ok := Append([]byte("prefix"), obj)
			if !ok {
				t.Fatalf("list %d %T: Append declined", i, obj)
			}
			if !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatalf("list %d: Append lost what was in the buffer", i)
			}
			got = got[len("prefix"):]
			for name, s := range encoders {
				var want bytes.Buffer
				if err := s.Encode(obj, &want); err != nil {
					t.Fatalf("list %d %T: reflective %s encoder: %v", i, obj, name, err)
				}
				if !bytes.Equal(got, want.Bytes()) {
					t.Fatalf("list %d %T differs from the reflective %s encoder:\n got %s\nwant %s", i, obj, name, got, want.Bytes())
				}
			}
		}
	}
}

func TestAppendDeclines(t *testing.T) {
	more := int64(3)
	for _, obj := range []runtime.Object{
		&metav1.Status{Status: metav1.StatusFailure, Message: "x"},
		&cmv1beta2.MetricValue{},
		&cmv1beta2.MetricValueList{ListMeta: metav1.ListMeta{ResourceVersion: "7"}},
		&emv1beta1.ExternalMetricValueList{ListMeta: metav1.ListMeta{Continue: "c"}},
		&cmv1beta1.MetricValueList{ListMeta: metav1.ListMeta{RemainingItemCount: &more}},
	} {
		if b, ok := Append([]byte("x"), obj); ok || string(b) != "x" {
			t.Errorf("%T %+v: Append = %q, %v; want it declined with the buffer unchanged", obj, obj, b, ok)
		}
	}
}

// TestNegotiated runs the path a request takes: the group's negotiated
// serializer, the version encoder converting the provider's internal list,
// then the JSON serializer. Lists must come out as the stock stack writes
// them; other objects and other media types must be the stock serializers'.
func TestNegotiated(t *testing.T) {
	info := genericapiserver.NewDefaultAPIGroupInfo(custom_metrics.GroupName, cmapiserver.Scheme, runtime.NewParameterCodec(cmapiserver.Scheme), cmapiserver.Codecs)
	stock := info.NegotiatedSerializer
	fast := Negotiated(stock)

	w := int64(30)
	internal := &custom_metrics.MetricValueList{Items: []custom_metrics.MetricValue{{
		DescribedObject: custom_metrics.ObjectReference{Kind: "Pod", Namespace: "bench", Name: "web-1", APIVersion: "/v1"},
		Metric:          custom_metrics.MetricIdentifier{Name: "http_requests_per_second"},
		Timestamp:       metav1.NewTime(time.Unix(1_790_000_000, 0)), WindowSeconds: &w, Value: *resource.NewMilliQuantity(1500, resource.DecimalSI),
	}}}
	status := &metav1.Status{Status: metav1.StatusFailure, Message: `metric "x" <not found>`, Reason: metav1.StatusReasonNotFound, Code: 404}

	encode := func(ns runtime.NegotiatedSerializer, mediaType string, obj runtime.Object) (string, runtime.Identifier) {
		t.Helper()
		info, ok := runtime.SerializerInfoForMediaType(ns.SupportedMediaTypes(), mediaType)
		if !ok {
			t.Fatalf("no serializer for %s", mediaType)
		}
		enc := ns.EncoderForVersion(info.Serializer, cmv1beta2.SchemeGroupVersion)
		b, err := runtime.Encode(enc, obj)
		if err != nil {
			t.Fatalf("encoding %T as %s: %v", obj, mediaType, err)
		}
		return string(b), info.Serializer.Identifier()
	}
	for _, mt := range []string{runtime.ContentTypeJSON, runtime.ContentTypeYAML, runtime.ContentTypeProtobuf} {
		for _, obj := range []runtime.Object{internal, status} {
			want, _ := encode(stock, mt, obj.DeepCopyObject())
			got, _ := encode(fast, mt, obj.DeepCopyObject())
			if got != want {
				t.Errorf("%s %T:\n got %q\nwant %q", mt, obj, got, want)
			}
		}
	}
	got, id := encode(fast, runtime.ContentTypeJSON, internal.DeepCopyObject())
	if _, stockID := encode(stock, runtime.ContentTypeJSON, internal.DeepCopyObject()); id == stockID {
		t.Errorf("the JSON serializer's identifier %q is the stock one's: cached serializations would be shared", id)
	}
	const item = `{"describedObject":{"kind":"Pod","namespace":"bench","name":"web-1","apiVersion":"/v1"},"metric":{"name":"http_requests_per_second","selector":null},"timestamp":"2026-09-21T14:13:20Z","windowSeconds":30,"value":"1500m"}`
	if want := `{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta2","metadata":{},"items":[` + item + "]}\n"; got != want {
		t.Errorf("JSON:\n got %s\nwant %s", got, want)
	}
}

// BenchmarkEncode: a 1,000-pod answer, from the provider's internal list to
// bytes, through the stock JSON, protobuf and Gantry's JSON serializers.
func BenchmarkEncode(b *testing.B) {
	w := int64(30)
	ts := metav1.NewTime(time.Unix(1_790_000_000, 0))
	internal := &custom_metrics.MetricValueList{}
	for i := range 1000 {
		internal.Items = append(internal.Items, custom_metrics.MetricValue{
			DescribedObject: custom_metrics.ObjectReference{Kind: "Pod", Namespace: "bench", Name: fmt.Sprintf("web-7d9c8b6f4-%05d", i), APIVersion: "/v1"},
			Metric:          custom_metrics.MetricIdentifier{Name: "http_requests_per_second"},
			Timestamp:       ts, WindowSeconds: &w, Value: *resource.NewMilliQuantity(int64(1000+i), resource.DecimalSI),
		})
	}
	info := genericapiserver.NewDefaultAPIGroupInfo(custom_metrics.GroupName, cmapiserver.Scheme, runtime.NewParameterCodec(cmapiserver.Scheme), cmapiserver.Codecs)
	for _, c := range []struct {
		name string
		ns   runtime.NegotiatedSerializer
		mt   string
	}{
		{"json", info.NegotiatedSerializer, runtime.ContentTypeJSON},
		{"protobuf", info.NegotiatedSerializer, runtime.ContentTypeProtobuf},
		{"gantry-json", Negotiated(info.NegotiatedSerializer), runtime.ContentTypeJSON},
	} {
		b.Run(c.name, func(b *testing.B) {
			si, _ := runtime.SerializerInfoForMediaType(c.ns.SupportedMediaTypes(), c.mt)
			enc := c.ns.EncoderForVersion(si.Serializer, cmv1beta2.SchemeGroupVersion)
			var buf bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				if err := enc.Encode(internal, &buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(buf.Len()), "bytes/answer")
		})
	}
}
