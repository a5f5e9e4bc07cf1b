package provider

import (
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// statusSettler tells the allocator when a Service's status moves on, so
// that the addresses the status no longer shows are freed: an address
// shown in a status stays held by its Service until then, even when a
// changed request replaced it and the new one was never announced.
type statusSettler struct {
	c   *cloud
	log klog.Logger
}

var _ cache.ResourceEventHandler = statusSettler{}

func (statusSettler) OnAdd(any, bool) {}
func (statusSettler) OnDelete(any)    {}

func (h statusSettler) OnUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*v1.Service)
	svc, ok2 := newObj.(*v1.Service)
	if !ok1 || !ok2 {
		return
	}
	shown := service.StatusAddrs(svc)
	if slices.Equal(service.StatusAddrs(old), shown) {
		return
	}
	if freed := h.c.alloc.Settle(svc.Namespace, svc.Name, shown); len(freed) > 0 {
		h.log.V(2).Info("Freed the addresses the status no longer shows", "service", klog.KObj(svc), "addresses", freed)
		h.c.announcer.serviceChanged(svc)
	}
}
