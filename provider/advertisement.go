package provider

import (
	"net/netip"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// advertisement computes the desired state of one VIP: the next hops are
// the candidates of its family that pass the health check and, for
// externalTrafficPolicy Local, hold a ready endpoint of a holder
// (endpointNodes). When every such node fails its health check, all of
// them are used, and failOpen is true: a broken health check must not
// black-hole a Service.
func (v *view) advertisement(vip netip.Addr, health healthView, endpointNodes func(*v1.Service) map[string]bool) (adv bgp.Advertisement, failOpen bool) {
	adv = bgp.Advertisement{Prefix: netip.PrefixFrom(vip, vip.BitLen())}
	holders := v.holders[vip]
	if len(holders) == 0 {
		return adv, false
	}
	var local map[string]bool
	for _, s := range holders {
		if s.Spec.ExternalTrafficPolicy != v1.ServiceExternalTrafficPolicyLocal {
			continue
		}
		if local == nil {
			local = map[string]bool{}
		}
		for n := range endpointNodes(s) {
			local[n] = true
		}
	}
	var healthy, all []bgp.NextHop
	for _, c := range v.candidates {
		if local != nil && !local[c.name] {
			continue
		}
		hop, ok := c.nextHop(vip)
		if !ok {
			continue
		}
		all = append(all, hop)
		if health.Healthy(c.name) {
			healthy = append(healthy, hop)
		}
	}
	adv.NextHops = healthy
	failOpen = len(healthy) == 0 && len(all) > 0
	if failOpen {
		adv.NextHops = all
	}
	attrs := mergeAttributes(v.cfg.BGP.ASN, holders)
	adv.Communities, adv.LargeCommunities, adv.LocalPref = attrs.Communities, attrs.LargeCommunities, attrs.LocalPref
	return adv, failOpen
}

// endpointNodes returns the nodes holding a ready endpoint of s.
func (a *announcer) endpointNodes(s *v1.Service) map[string]bool {
	eps, err := a.slices.EndpointSlices(s.Namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: s.Name}))
	if err != nil {
		return nil
	}
	return readyEndpointNodes(eps)
}

// readyEndpointNodes returns the nodes holding a ready endpoint in eps.
func readyEndpointNodes(eps []*discoveryv1.EndpointSlice) map[string]bool {
	nodes := map[string]bool{}
	for _, s := range eps {
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil {
				continue
			}
			// A nil Ready means ready (the EndpointSlice API's rule).
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			nodes[*ep.NodeName] = true
		}
	}
	return nodes
}
