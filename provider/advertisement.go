package provider

import (
	"net/netip"

	v1 "k8s.io/api/core/v1"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// vipPlan is the desired state of one VIP, and what it was computed from
// that a later change may move.
type vipPlan struct {
	adv bgp.Advertisement
	// failOpen: every node that may carry the VIP fails its health
	// check, and all of them are announced.
	failOpen bool
	// local: a holder has externalTrafficPolicy Local, so that only the
	// endpointNodes (those with a ready endpoint of a Local holder) may
	// carry the VIP; else every candidate of its family may.
	local         bool
	endpointNodes []string
	// bar tells which other node would enter adv's shortlist (see
	// bgp.Shortlist): a node change moves the VIP only when the node is
	// among its next hops or passes the bar.
	bar bgp.Bar
}

// advertisement computes the desired state of one VIP: the next hops are
// the candidates of its family that pass the health check and, for
// externalTrafficPolicy Local, hold a ready endpoint of a holder
// (endpointCounts). When every such node fails its health check, all of
// them are used, and failOpen is true: a broken health check must not
// black-hole a Service. With weighted ECMP (weightedECMP), each next hop's
// share is the holders' ready endpoints on its node, added up.
//
// The next hops are the shortlist of those nodes (bgp.Shortlist): the
// ones some router may get a path via, so that each VIP keeps and hands
// over maxPathsPerPrefix × (racks + 1) nodes at most, not every node. A
// VIP held by a Service with sessionAffinity ClientIP gets the first node
// alone (see pinned).
func (v *view) advertisement(vip netip.Addr, health healthView, endpointCounts func(*v1.Service) map[string]int) vipPlan {
	adv := bgp.Advertisement{Prefix: netip.PrefixFrom(vip, vip.BitLen())}
	holders := v.holders[vip]
	if len(holders) == 0 {
		return vipPlan{adv: adv}
	}
	var local map[string]int // node -> ready endpoints of the Local holders
	for _, s := range holders {
		if s.Spec.ExternalTrafficPolicy != v1.ServiceExternalTrafficPolicyLocal {
			continue
		}
		if local == nil {
			local = map[string]int{}
		}
		for n, count := range endpointCounts(s) {
			local[n] += count
		}
	}
	weighted := weightedECMP(v.cfg.BGP.WeightedECMP.Enabled, holders)
	adv.TransitiveLinkBandwidth = weighted && v.cfg.BGP.WeightedECMP.Transitive
	// healthy and all are every candidate for a moment: they reuse the
	// view's buffers, and only the shortlist is kept.
	healthy, all := v.hopBuf[0][:0], v.hopBuf[1][:0]
	defer func() { v.hopBuf = [2][]bgp.NextHop{healthy, all} }()
	for _, c := range v.candidates {
		if local != nil && local[c.name] == 0 {
			continue
		}
		hop, ok := c.nextHop(vip)
		if !ok {
			continue
		}
		if weighted {
			hop.Share = share(local[c.name])
		}
		all = append(all, hop)
		if health.Healthy(c.name) {
			healthy = append(healthy, hop)
		}
	}
	hops := healthy
	failOpen := len(healthy) == 0 && len(all) > 0
	if failOpen {
		hops = all
	}
	k, byRack := v.cfg.BGP.PathsPerPrefix(), true
	if pinned(holders) {
		k, byRack = 1, false
	}
	var bar bgp.Bar
	adv.NextHops, bar = bgp.Shortlist(vip, hops, k, byRack)
	if failOpen {
		// Any node that passes its health check again ends fail-open,
		// wherever it ranks among the failing ones: the zero Bar admits
		// every node.
		bar = bgp.Bar{}
	}
	attrs := mergeAttributes(v.cfg.BGP.ASN, holders)
	adv.Communities, adv.LargeCommunities, adv.LocalPref = attrs.Communities, attrs.LargeCommunities, attrs.LocalPref
	plan := vipPlan{adv: adv, failOpen: failOpen, local: local != nil, bar: bar}
	for n, count := range local {
		if count > 0 {
			plan.endpointNodes = append(plan.endpointNodes, n)
		}
	}
	return plan
}

// pinned tells whether a VIP goes via one node: a holder has
// sessionAffinity ClientIP. Each node's kube-proxy keeps its own affinity
// table, and routers spread one client's connections over the nodes by
// their ports (ECMP hashes the 5-tuple), so affinity holds only when every
// connection to the VIP reaches the same node. That node is the VIP's
// first in rendezvous order; when it fails, the next takes over, like any
// path.
func pinned(holders []*v1.Service) bool {
	for _, s := range holders {
		if s.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
			return true
		}
	}
	return false
}
