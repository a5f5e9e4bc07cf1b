package provider

import (
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// Weighted ECMP (docs/weighted-ecmp.md): for an externalTrafficPolicy
// Local VIP, each node's path carries a share equal to the ready
// endpoints the VIP's holders have on that node, so that routers which
// honour the link-bandwidth community send each node traffic in
// proportion to the pods that serve it there.

// weightedECMP tells whether a VIP's paths carry shares: bgp.weightedECMP
// is on, every holder is externalTrafficPolicy Local, and none opts out
// (service.WantsWeightedECMP). A path carries one value for all the
// holders of its address, so one holder's opt-out, or a bad value of its
// annotation, turns weights off for the address. (Sharing an address
// needs the same policy and, for Local, the same pod selector, so the
// holders agree on everything else.)
func weightedECMP(enabled bool, holders []*v1.Service) bool {
	if !enabled || len(holders) == 0 {
		return false
	}
	for _, s := range holders {
		if s.Spec.ExternalTrafficPolicy != v1.ServiceExternalTrafficPolicyLocal {
			return false
		}
		if ok, _ := service.WantsWeightedECMP(s); !ok {
			return false
		}
	}
	return true
}

// share is a node's share of a VIP: its ready endpoints, within what the
// speaker sends.
func share(endpoints int) uint32 {
	return uint32(min(max(endpoints, 0), bgp.MaxShare))
}

// endpointCounts returns how many ready endpoints of s each node holds.
func (a *announcer) endpointCounts(s *v1.Service) map[string]int {
	objs, err := a.slicesByService.ByIndex(indexByService, serviceKey(s.Namespace, s.Name))
	if err != nil {
		return nil
	}
	eps := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, obj := range objs {
		if es, ok := obj.(*discoveryv1.EndpointSlice); ok {
			eps = append(eps, es)
		}
	}
	return readyEndpointCounts(eps)
}

// readyEndpointCounts returns, per node, how many distinct ready
// endpoints eps hold there. A dual-stack Service's slices list each pod
// once per family, and the EndpointSlice controller may list a pod in two
// slices for a moment while it rebalances them: each pod counts once, by
// its targetRef (else by its first address). A nil Ready means ready
// (the EndpointSlice API's rule). Nodes without a ready endpoint are
// absent.
func readyEndpointCounts(eps []*discoveryv1.EndpointSlice) map[string]int {
	seen := map[string]map[string]bool{} // node -> endpoint keys
	for _, s := range eps {
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil {
				continue
			}
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			keys := seen[*ep.NodeName]
			if keys == nil {
				keys = map[string]bool{}
				seen[*ep.NodeName] = keys
			}
			keys[endpointKey(ep)] = true
		}
	}
	counts := make(map[string]int, len(seen))
	for n, keys := range seen {
		counts[n] = len(keys)
	}
	return counts
}

// endpointKey identifies the pod behind an endpoint.
func endpointKey(ep discoveryv1.Endpoint) string {
	if r := ep.TargetRef; r != nil && r.Name != "" {
		return "ref/" + r.Kind + "/" + r.Namespace + "/" + r.Name
	}
	if len(ep.Addresses) > 0 {
		return "addr/" + ep.Addresses[0]
	}
	return ""
}
