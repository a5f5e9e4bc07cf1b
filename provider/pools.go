package provider

import (
	"net/netip"
	"sync/atomic"

	"go4.org/netipx"

	"github.com/baremetal-ccm/baremetal-ccm/ipam"
)

// poolHistory is the set of addresses of every pool this process has had
// in force. Status is not authority: anyone who may write a Service's
// status could otherwise have any address announced to the routers. A
// replica announces an address only when it lies in this set: in a pool
// now, or in one that a reload shrank while a Service still holds the
// address (a stale assignment). After a restart only the pools then in
// force count. The speaker's export policy repeats the rule.
type poolHistory struct {
	set atomic.Pointer[netipx.IPSet]
}

// with returns the history extended by pools, without putting it in force.
func (h *poolHistory) with(pools []ipam.Pool) *netipx.IPSet {
	var b netipx.IPSetBuilder
	if cur := h.set.Load(); cur != nil {
		b.AddSet(cur)
	}
	for _, p := range pools {
		for _, r := range p.Ranges {
			b.AddRange(r)
		}
	}
	s, _ := b.IPSet() // only valid ranges reach the pools
	return s
}

// commit puts s in force.
func (h *poolHistory) commit(s *netipx.IPSet) { h.set.Store(s) }

// contains tells whether a may be announced.
func (h *poolHistory) contains(a netip.Addr) bool {
	s := h.set.Load()
	return s != nil && s.Contains(a.Unmap())
}

// prefixes returns the history as prefixes, for the speaker's export
// policy.
func (h *poolHistory) prefixes() []netip.Prefix {
	if s := h.set.Load(); s != nil {
		return s.Prefixes()
	}
	return nil
}
