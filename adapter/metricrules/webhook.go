package metricrules

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/klog/v2"
)

// WebhookPath is where Gantry serves the validating webhook of
// MetricRules, on its secure port, outside delegated authentication and
// authorization (the kube-apiserver calls it without credentials; it
// answers only whether an object compiles, and reads nothing).
const WebhookPath = "/validate-metricrules"

// maxReviewBytes bounds an AdmissionReview the webhook reads; the
// kube-apiserver limits objects to about 1.5 MiB.
const maxReviewBytes = 4 << 20

// Webhook refuses a MetricRule that does not compile, with the message
// its status would carry (the same Compile and Env as the controller).
// Whether the namespace may define MetricRules and how many it has are
// left to the status: they change with other objects, and the status
// says so.
func Webhook(env *Env) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
		if err != nil || len(body) > maxReviewBytes {
			http.Error(w, "reading the AdmissionReview failed or it is too large", http.StatusBadRequest)
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
			http.Error(w, "expected an admission.k8s.io/v1 AdmissionReview with a request", http.StatusBadRequest)
			return
		}
		resp := review.Request.DeepCopy()
		out := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
			Response: review1(resp, env),
		}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(&out); err != nil {
			klog.V(2).InfoS("writing an AdmissionReview", "err", err)
		}
	})
}

// review1 answers one admission request.
func review1(req *admissionv1.AdmissionRequest, env *Env) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Resource.Group != Group || req.Resource.Resource != Resource {
		return resp
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return resp
	}
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(req.Object.Raw); err != nil {
		return deny(resp, fmt.Sprintf("%v: %v", errNotCompiled, err))
	}
	mr, err := FromUnstructured(&u)
	if err != nil {
		return deny(resp, err.Error())
	}
	if mr.Namespace == "" {
		mr.Namespace = req.Namespace
	}
	if mr.Name == "" {
		mr.Name = req.Name
	}
	if mr.Name == "" {
		mr.Name = u.GetGenerateName()
	}
	if _, refusal := Compile(mr.Namespace, mr.Name, mr.Spec, env); refusal != nil {
		return deny(resp, truncate(refusal.Full(), maxConditionMessage))
	}
	return resp
}

func deny(resp *admissionv1.AdmissionResponse, msg string) *admissionv1.AdmissionResponse {
	resp.Allowed = false
	resp.Result = &metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusUnprocessableEntity,
		Reason:  metav1.StatusReasonInvalid,
		Message: msg,
	}
	return resp
}
