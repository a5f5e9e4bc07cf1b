package provider

import (
	"hash/fnv"
	"net/netip"
	"slices"
	"sync"

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

// announcements are the outcomes of every VIP. A full sync of the
// announcer makes new ones; a sync of changes updates the VIPs it
// recomputed in place, under mu (copying 10,000 outcomes for each change
// would cost more than the change), and readers look VIPs up one by one.
type announcements struct {
	// speaker is false when the cloud config has no bgp section: nothing
	// is announced at all. It never changes.
	speaker bool

	mu   sync.RWMutex
	vips map[netip.Addr]vipOutcome
}

// outcome returns the outcome of vip, if it is held.
func (an *announcements) outcome(vip netip.Addr) (vipOutcome, bool) {
	if an == nil {
		return vipOutcome{}, false
	}
	an.mu.RLock()
	defer an.mu.RUnlock()
	o, ok := an.vips[vip]
	return o, ok
}

// update sets the outcomes of changed (nil: the VIP is no longer held).
func (an *announcements) update(changed map[netip.Addr]*vipOutcome) {
	an.mu.Lock()
	defer an.mu.Unlock()
	for vip, o := range changed {
		if o == nil {
			delete(an.vips, vip)
		} else {
			an.vips[vip] = *o
		}
	}
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
	an.mu.RLock()
	defer an.mu.RUnlock()
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
