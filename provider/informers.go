package provider

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// NewInformerFactory is the factory of the informers the provider watches
// through. The binary makes it the upstream controllers' factory too
// (Options.Informers), so that each Service and Node is cached once per
// process, not once for them and once for the provider. resync is the
// period at which the informers replay their objects to the handlers
// that ask for it (the upstream controllers); the provider's own handlers
// do not (watchWithoutResync).
func NewInformerFactory(client kubernetes.Interface, resync time.Duration) informers.SharedInformerFactory {
	return informers.NewSharedInformerFactoryWithOptions(client, resync, informers.WithTransform(withoutManagedFields))
}

// withoutManagedFields is the informers' transform: it drops the managed
// fields of each object before it is cached. Nothing here reads them (the
// status writer applies its own fields without extracting them), nor do
// the upstream controllers; and on a Service or a Node, written by several
// managers, they are often its largest part: at 10,000 Services they are
// memory for nothing. Tombstones and other objects without metadata pass
// unchanged.
func withoutManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// watchWithoutResync registers h on inf without the factory's periodic
// replay of every object: the announcer and the route syncer re-assert
// their state on their own (resyncInterval), and a replay of 10,000
// Services would only make them compare. Added before the factory starts
// the informer, it cannot fail.
func watchWithoutResync(inf cache.SharedIndexInformer, h cache.ResourceEventHandler) cache.ResourceEventHandlerRegistration {
	reg, _ := inf.AddEventHandlerWithResyncPeriod(h, 0)
	return reg
}
