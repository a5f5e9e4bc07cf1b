package provider

import (
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// candidate is a node that may carry VIPs, before the health check and the
// endpoints of a Service are taken into account.
type candidate struct {
	name string
	// addrs are the node's addresses, InternalIPs before ExternalIPs; the
	// first one of a VIP's family is the next hop.
	addrs []netip.Addr
	rack  string
}

// ineligibility says why a node carries no VIP; empty when it may.
func ineligibility(n *v1.Node) string {
	switch {
	case n.DeletionTimestamp != nil:
		return "being deleted"
	case !nodeReady(n):
		return "not Ready"
	case hasTaint(n, cloudproviderapi.TaintNodeShutdown):
		return "shut down"
	}
	if _, ok := n.Labels[v1.LabelNodeExcludeBalancers]; ok {
		return "excluded by label " + v1.LabelNodeExcludeBalancers
	}
	return ""
}

func nodeReady(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func hasTaint(n *v1.Node, key string) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t v1.Taint) bool { return t.Key == key })
}

// newCandidate returns the node as a candidate, with its rack: the
// inventory's, else the rack whose subnets hold one of its addresses.
func newCandidate(n *v1.Node, cfg *config.Config) candidate {
	c := candidate{name: n.Name}
	for _, typ := range []v1.NodeAddressType{v1.NodeInternalIP, v1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			if a.Type != typ {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				c.addrs = append(c.addrs, ip.Unmap())
			}
		}
	}
	if m, ok := cfg.Machines[n.Name]; ok && m.Rack != "" {
		c.rack = m.Rack
		return c
	}
	for _, a := range c.addrs {
		if r, ok := cfg.RackOf(a); ok {
			c.rack = r.Name
			break
		}
	}
	return c
}

// nextHop returns the candidate's next hop for a VIP of addr's family.
func (c candidate) nextHop(vip netip.Addr) (bgp.NextHop, bool) {
	for _, a := range c.addrs {
		if a.Is4() == vip.Is4() {
			return bgp.NextHop{Node: c.name, Addr: a, Rack: c.rack}, true
		}
	}
	return bgp.NextHop{}, false
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
