package provider

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	v1 "k8s.io/api/core/v1"
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

// duplicateAddress is an address that two Nodes claim: the older keeps it.
type duplicateAddress struct {
	addr         netip.Addr
	newer, older string
}

// candidates returns the eligible nodes, sorted by name, each with the
// addresses no older Node claims. A kubelet writes its own Node's status,
// so a Node can claim another's address: the older Node keeps it, the
// newer loses that address (and the paths via it), and the rest is
// announced as usual. Ownership counts every Node, eligible or not, so
// that a Node cannot take an address while its owner is NotReady.
func candidates(nodes []*v1.Node, cfg *config.Config) ([]candidate, []duplicateAddress) {
	byAge := slices.Clone(nodes)
	sort.Slice(byAge, func(i, j int) bool { return olderNode(byAge[i], byAge[j]) })
	owner := map[netip.Addr]string{}
	var dups []duplicateAddress
	var out []candidate
	for _, n := range byAge {
		c := newCandidate(n, cfg)
		kept := c.addrs[:0:0]
		for _, a := range c.addrs {
			if o, taken := owner[a]; taken && o != n.Name {
				dups = append(dups, duplicateAddress{addr: a, newer: n.Name, older: o})
				continue
			}
			owner[a] = n.Name
			kept = append(kept, a)
		}
		c.addrs = kept
		if ineligibility(n) == "" {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, dups
}

func olderNode(a, b *v1.Node) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// reportDuplicates puts a Warning Event on each Node that lost an address
// to an older Node, once per distinct conflict, and clears the others.
func (a *announcer) reportDuplicates(nodes []*v1.Node, dups []duplicateAddress) {
	byNode := map[string][]duplicateAddress{}
	for _, d := range dups {
		byNode[d.newer] = append(byNode[d.newer], d)
	}
	for _, n := range nodes {
		ds := byNode[n.Name]
		if len(ds) == 0 {
			a.warn.clear(nodeRef(n), reasonDuplicateNodeAddress)
			continue
		}
		msg := ""
		for i, d := range ds {
			if i > 0 {
				msg += "; "
			}
			msg += fmt.Sprintf("address %s is already the address of the older Node %s", d.addr, d.older)
		}
		a.warn.warnOnce(nodeRef(n), reasonDuplicateNodeAddress, msg+": no VIP is announced via this Node at that address")
	}
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

// newCandidate returns the node as a candidate, with its rack.
func newCandidate(n *v1.Node, cfg *config.Config) candidate {
	c := candidate{name: n.Name}
	for _, typ := range []v1.NodeAddressType{v1.NodeInternalIP, v1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			if a.Type != typ {
				continue
			}
			// A kubelet writes its own Node's addresses: an unspecified,
			// multicast or link-local address is never a next hop (the
			// speaker would refuse the whole VIP for the first two). A
			// loopback address is kept: the tests run nodes on loopback,
			// and a router refuses it as a martian for that path alone.
			ip, err := netip.ParseAddr(a.Address)
			if err != nil || !usableNextHop(ip) || slices.Contains(c.addrs, ip.Unmap()) {
				continue
			}
			c.addrs = append(c.addrs, ip.Unmap())
		}
	}
	if r, ok := cfg.NodeRack(n.Name, c.addrs); ok {
		c.rack = r.Name
	}
	return c
}

func usableNextHop(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.Zone() == "" && (ip.IsGlobalUnicast() || ip.IsLoopback())
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
