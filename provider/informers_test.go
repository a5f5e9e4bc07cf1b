package provider

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func TestWithoutManagedFields(t *testing.T) {
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", ManagedFields: managed, Annotations: map[string]string{"a": "b"}}}
	tombstone := cache.DeletedFinalStateUnknown{Key: "default/web", Obj: svc}
	for _, tc := range []struct {
		name string
		obj  any
		// check tells what is wrong with the transformed object.
		check func(any) string
	}{
		{"a Service loses its managed fields, nothing else", svc, func(o any) string {
			s := o.(*v1.Service)
			if s.ManagedFields != nil || s.Name != "web" || s.Annotations["a"] != "b" {
				return "managed fields kept, or other metadata lost"
			}
			return ""
		}},
		{"a Node too", &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", ManagedFields: managed}}, func(o any) string {
			if o.(*v1.Node).ManagedFields != nil {
				return "managed fields kept"
			}
			return ""
		}},
		{"a tombstone passes unchanged", tombstone, func(o any) string {
			if _, ok := o.(cache.DeletedFinalStateUnknown); !ok {
				return "not the tombstone"
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := withoutManagedFields(tc.obj)
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(got); msg != "" {
				t.Error(msg)
			}
		})
	}
}
