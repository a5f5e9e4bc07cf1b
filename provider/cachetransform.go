package provider

import "k8s.io/apimachinery/pkg/api/meta"

// withoutManagedFields is the informers' transform: it drops the managed
// fields of each object before it is cached. Nothing here reads them (the
// status writer applies its own fields without extracting them), and on a
// Service or a Node, written by several managers, they are often its
// largest part: at 10,000 Services they are memory for nothing. Tombstones
// and other objects without metadata pass unchanged.
func withoutManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
