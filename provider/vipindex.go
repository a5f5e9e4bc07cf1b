package provider

import (
	"net/netip"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// vipIndex is what the announcer remembers of each VIP from the syncs
// before, to find the VIPs a change can move without looking at the
// others: which Services hold a VIP, which nodes may carry it, and what
// the speaker was last handed for it.
type vipIndex struct {
	// sent maps each announced VIP to the advertisement the speaker was
	// last handed for it (withdrawn VIPs are absent), so that a VIP that
	// comes out the same is not handed over again.
	sent map[netip.Addr]bgp.Advertisement
	// holders maps a VIP to the namespace/name of its holders, and
	// bySvc a Service to its VIPs: the VIPs a Service change can move
	// are the ones it held and the ones it holds now.
	holders map[netip.Addr][]string
	bySvc   map[string]map[netip.Addr]struct{}
	// cluster holds, per family (0: IPv4, 1: IPv6), the VIPs every
	// candidate of that family may carry (those without a holder of
	// externalTrafficPolicy Local), each with the bar a node must pass
	// to enter its shortlist.
	cluster [2]map[netip.Addr]bgp.Bar
	// nodes maps a VIP to the nodes whose change can move it: the ones it
	// is announced via and, for a VIP with a Local holder, the ones with
	// a ready endpoint of its holders (the only nodes that may carry it).
	// byNode is the reverse.
	nodes  map[netip.Addr][]string
	byNode map[string]map[netip.Addr]struct{}
}

func newVIPIndex() *vipIndex {
	return &vipIndex{
		sent:    map[netip.Addr]bgp.Advertisement{},
		holders: map[netip.Addr][]string{},
		bySvc:   map[string]map[netip.Addr]struct{}{},
		cluster: [2]map[netip.Addr]bgp.Bar{{}, {}},
		nodes:   map[netip.Addr][]string{},
		byNode:  map[string]map[netip.Addr]struct{}{},
	}
}

func family(ip netip.Addr) int {
	if ip.Is4() {
		return 0
	}
	return 1
}

// set records who holds vip and which nodes' changes can move it, from
// its plan p.
func (x *vipIndex) set(vip netip.Addr, holders []string, p vipPlan) {
	x.forget(vip)
	if len(holders) == 0 {
		return
	}
	x.holders[vip] = holders
	for _, key := range holders {
		addSet(x.bySvc, key, vip)
	}
	nodes := p.endpointNodes
	if !p.local {
		x.cluster[family(vip)][vip] = p.bar
		nodes = make([]string, len(p.adv.NextHops))
		for i, h := range p.adv.NextHops {
			nodes[i] = h.Node
		}
	}
	if len(nodes) == 0 {
		return
	}
	x.nodes[vip] = nodes
	for _, n := range nodes {
		addSet(x.byNode, n, vip)
	}
}

// forget drops what is known of who holds vip and who may carry it (not
// what was sent).
func (x *vipIndex) forget(vip netip.Addr) {
	for _, key := range x.holders[vip] {
		removeSet(x.bySvc, key, vip)
	}
	delete(x.holders, vip)
	delete(x.cluster[family(vip)], vip)
	for _, n := range x.nodes[vip] {
		removeSet(x.byNode, n, vip)
	}
	delete(x.nodes, vip)
}

// ofService adds to out the VIPs the Service key held at the last sync.
func (x *vipIndex) ofService(key string, out map[netip.Addr]struct{}) {
	for vip := range x.bySvc[key] {
		out[vip] = struct{}{}
	}
}

// ofNode adds to out the VIPs a change of the node c can move: the ones
// announced via it, the Local ones with an endpoint on it, and those of
// its families without a Local holder whose shortlist it would enter. A
// node's change costs what it carries, plus one hash per VIP.
func (x *vipIndex) ofNode(c candidate, out map[netip.Addr]struct{}) {
	var fams [2]bool
	for _, a := range c.addrs {
		fams[family(a)] = true
	}
	for f, has := range fams {
		if !has {
			continue
		}
		for vip, bar := range x.cluster[f] {
			if bar.Admits(vip, c.name, c.rack) {
				out[vip] = struct{}{}
			}
		}
	}
	for vip := range x.byNode[c.name] {
		out[vip] = struct{}{}
	}
}

func addSet[K comparable](m map[K]map[netip.Addr]struct{}, k K, vip netip.Addr) {
	s := m[k]
	if s == nil {
		s = map[netip.Addr]struct{}{}
		m[k] = s
	}
	s[vip] = struct{}{}
}

func removeSet[K comparable](m map[K]map[netip.Addr]struct{}, k K, vip netip.Addr) {
	if s := m[k]; s != nil {
		delete(s, vip)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}
