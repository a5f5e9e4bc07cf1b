package provider

import (
	"maps"
	"slices"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/tools/cache"

	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// The announcer's informer handlers: each records in the dirty set what
// an event can change, and nothing for an event that changes nothing the
// announcer reads, so that a heartbeat, or the status writer's own
// patches, cost no sync.

// serviceChanged dirties a Service that was added or deleted.
func (a *announcer) serviceChanged(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	a.dirty.markService(key)
	a.syncLoop.Trigger()
}

func (a *announcer) serviceUpdated(oldObj, newObj any) {
	old, ok1 := oldObj.(*v1.Service)
	svc, ok2 := newObj.(*v1.Service)
	if ok1 && ok2 && !serviceMatters(old, svc) {
		return
	}
	a.serviceChanged(newObj)
}

// serviceMatters tells whether an update changes what the announcer
// reads of a Service: its spec, the addresses of its status, its labels,
// the annotations other than the ones this provider writes, and whether
// it is being deleted. The status writer's patches (conditions, the pool
// annotation) do not.
func serviceMatters(old, svc *v1.Service) bool {
	return !equality.Semantic.DeepEqual(old.Spec, svc.Spec) ||
		!equality.Semantic.DeepEqual(old.Status.LoadBalancer.Ingress, svc.Status.LoadBalancer.Ingress) ||
		!maps.Equal(old.Labels, svc.Labels) ||
		!sameForeignAnnotations(old, svc) ||
		(old.DeletionTimestamp == nil) != (svc.DeletionTimestamp == nil)
}

// sameForeignAnnotations compares the annotations other than the ones
// this provider writes.
func sameForeignAnnotations(old, svc *v1.Service) bool {
	foreign := func(s *v1.Service) map[string]string {
		m := maps.Clone(s.Annotations)
		delete(m, service.AnnotationAllocatedFromPool)
		return m
	}
	return maps.Equal(foreign(old), foreign(svc))
}

// nodesChanged marks the candidates for recomputing.
func (a *announcer) nodesChanged() {
	a.dirty.markNodes()
	a.syncLoop.Trigger()
}

func (a *announcer) nodeUpdated(oldObj, newObj any) {
	old, ok1 := oldObj.(*v1.Node)
	n, ok2 := newObj.(*v1.Node)
	if ok1 && ok2 && !nodeMatters(old, n) {
		return
	}
	a.nodesChanged()
}

// nodeMatters tells whether an update changes what makes the Node a
// candidate (see candidates): whether it is eligible, its addresses (its
// next hops and its rack), its age (who keeps an address two Nodes
// claim). A kubelet's heartbeat changes none of them.
func nodeMatters(old, n *v1.Node) bool {
	return ineligibility(old) != ineligibility(n) ||
		!slices.Equal(old.Status.Addresses, n.Status.Addresses) ||
		!old.CreationTimestamp.Equal(&n.CreationTimestamp)
}

// healthChanged is called when a node's health check flips.
func (a *announcer) healthChanged() {
	a.dirty.markHealth()
	a.syncLoop.Trigger()
}

// serviceOfSlice returns the namespace/name of an EndpointSlice's
// Service, or "".
func serviceOfSlice(obj any) string {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
		return ""
	}
	return serviceKey(s.Namespace, s.Labels[discoveryv1.LabelServiceName])
}

// sliceChanged dirties the Service of an EndpointSlice added or deleted.
func (a *announcer) sliceChanged(obj any) {
	if key := serviceOfSlice(obj); key != "" {
		a.dirty.markService(key)
		a.syncLoop.Trigger()
	}
}

func (a *announcer) sliceUpdated(oldObj, newObj any) {
	old, ok1 := oldObj.(*discoveryv1.EndpointSlice)
	s, ok2 := newObj.(*discoveryv1.EndpointSlice)
	if ok1 && ok2 && serviceOfSlice(old) == serviceOfSlice(s) && slices.Equal(readyOnNodes(old), readyOnNodes(s)) {
		return
	}
	a.sliceChanged(oldObj)
	a.sliceChanged(newObj)
}

// readyOnNodes lists the ready endpoints of a slice with their nodes,
// sorted: what readyEndpointCounts counts.
func readyOnNodes(s *discoveryv1.EndpointSlice) []string {
	var out []string
	for _, ep := range s.Endpoints {
		if ep.NodeName == nil || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
			continue
		}
		out = append(out, *ep.NodeName+"\x00"+endpointKey(ep))
	}
	slices.Sort(out)
	return out
}
