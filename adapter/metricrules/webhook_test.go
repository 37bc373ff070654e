package metricrules

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func TestWebhook(t *testing.T) {
	srv := httptest.NewServer(Webhook(testEnv()))
	defer srv.Close()
	review := func(t *testing.T, op admissionv1.Operation, specYAML string) *admissionv1.AdmissionResponse {
		t.Helper()
		obj := metricRule(t, "team-a", "web", 0, specYAML)
		raw, err := obj.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		in := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID:       types.UID("req-1"),
				Resource:  metav1.GroupVersionResource{Group: Group, Version: Version, Resource: Resource},
				Namespace: "team-a", Name: "web", Operation: op,
				Object: runtime.RawExtension{Raw: raw},
			},
		}
		body, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(srv.URL+WebhookPath, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil || out.Response.UID != "req-1" {
			t.Fatalf("answer is not an AdmissionReview for req-1: %+v", out)
		}
		return out.Response
	}

	t.Run("a rule that compiles is allowed", func(t *testing.T) {
		if r := review(t, admissionv1.Create, goodRule); !r.Allowed {
			t.Errorf("denied: %+v", r.Result)
		}
	})
	t.Run("a broken rule is denied with the status' message", func(t *testing.T) {
		broken := `
rules:
- seriesQuery: 'x{namespace="team-b"}'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'
`
		r := review(t, admissionv1.Update, broken)
		if r.Allowed {
			t.Fatal("allowed a rule that names another namespace")
		}
		_, refusal := Compile("team-a", "web", spec(t, broken), testEnv())
		if refusal == nil || r.Result == nil || r.Result.Message != refusal.Full() {
			t.Errorf("denial %+v; want the status' message %q", r.Result, refusal.Full())
		}
	})
	t.Run("a delete is not judged", func(t *testing.T) {
		if r := review(t, admissionv1.Delete, `rules: []`); !r.Allowed {
			t.Errorf("denied a delete: %+v", r.Result)
		}
	})
	t.Run("not an AdmissionReview", func(t *testing.T) {
		resp, err := http.Post(srv.URL+WebhookPath, "application/json", bytes.NewReader([]byte(`{"kind":"x"}`)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d; want 400", resp.StatusCode)
		}
	})
}
