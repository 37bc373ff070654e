package provider

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// TestTrimMetadata: the object cache keeps what selectors and answers read
// and drops the rest.
func TestTrimMetadata(t *testing.T) {
	in := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: "web-1", Namespace: "shop", UID: "u1", ResourceVersion: "7",
		Labels:          map[string]string{"app": "web"},
		Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		OwnerReferences: []metav1.OwnerReference{{Name: "web-rs"}},
		Finalizers:      []string{"x"},
	}}
	want := metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u1", ResourceVersion: "7", Labels: map[string]string{"app": "web"}}
	out, err := trimMetadata(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, out.(*metav1.PartialObjectMetadata).ObjectMeta); diff != "" {
		t.Errorf("trimmed metadata (-want +got):\n%s", diff)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "shop/web-1"}
	if got, err := trimMetadata(tomb); err != nil || got != tomb {
		t.Errorf("tombstone: %v, %v; want it unchanged", got, err)
	}
}
