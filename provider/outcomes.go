package provider

import (
	"hash/fnv"
	"net/netip"
	"slices"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// vipOutcome is what one sync of the announcer did for one VIP, as this
// replica sees it: the Services' conditions and Events are written from
// it (see statusWriter).
type vipOutcome struct {
	// nodes is how many nodes carry the VIP (its next hops), and nodeSet
	// a digest of which ones, so that a change of the set is seen without
	// keeping every node name of every VIP.
	nodes   int
	nodeSet uint64
	// failOpen: every eligible node fails its health check, and all of
	// them are announced.
	failOpen bool
	// peered counts the routers of this replica that would get a path of
	// the VIP (without rack, or of the rack of one of its nodes), and
	// routers those of them whose session is Established.
	peered, routers int
}

// announcements are the outcomes of every VIP, as of one sync.
type announcements struct {
	// speaker is false when the cloud config has no bgp section: nothing
	// is announced at all.
	speaker bool
	vips    map[netip.Addr]vipOutcome
}

// newVIPOutcome summarises the advertisement of one VIP.
func newVIPOutcome(adv bgp.Advertisement, failOpen bool, peers []bgp.PeerStatus) vipOutcome {
	o := vipOutcome{nodes: len(adv.NextHops), failOpen: failOpen, nodeSet: nodeSetDigest(adv.NextHops)}
	for _, p := range peers {
		if p.Rack != "" && !slices.ContainsFunc(adv.NextHops, func(h bgp.NextHop) bool { return h.Rack == p.Rack }) {
			continue
		}
		o.peered++
		if p.State == bgp.StateEstablished {
			o.routers++
		}
	}
	return o
}

// nodeSetDigest identifies a set of next hops by their node names,
// whatever their order.
func nodeSetDigest(hops []bgp.NextHop) uint64 {
	names := make([]string, len(hops))
	for i, h := range hops {
		names[i] = h.Node
	}
	slices.Sort(names)
	h := fnv.New64a()
	for _, n := range names {
		_, _ = h.Write([]byte(n))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum64()
}

// failOpenByFamily counts the VIPs announced fail-open, per family.
func (an *announcements) failOpenByFamily() (v4, v6 int) {
	if an == nil {
		return 0, 0
	}
	for vip, o := range an.vips {
		if !o.failOpen {
			continue
		}
		if vip.Is4() {
			v4++
		} else {
			v6++
		}
	}
	return v4, v6
}
