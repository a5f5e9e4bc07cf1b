package bgp

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// NextHop is one node a VIP is announced via.
type NextHop struct {
	// Node is the node's name: its identity for path identifiers and the
	// rendezvous hash, so a renumbered node keeps its paths.
	Node string
	// Addr is the next hop, of the VIP's address family.
	Addr netip.Addr
	// Rack is the node's rack: routers with a rack get only paths via
	// nodes of their rack. Empty: only routers without a rack get it.
	Rack string
	// Share, when not 0, is this node's share of the VIP's traffic
	// relative to the other next hops' (weighted ECMP): the path carries
	// the link-bandwidth extended community, Share × LinkBandwidthUnit
	// bytes per second, at most MaxShare units (see linkbandwidth.go).
	// 0: no community, and routers spread the traffic equally. Either
	// every next hop of a VIP has a share or none has.
	Share uint32
}

// Advertisement is the desired state of one VIP.
type Advertisement struct {
	// Prefix is the VIP, a single address (/32 or /128).
	Prefix netip.Prefix
	// NextHops are the eligible nodes, of the VIP's address family. When
	// there are more than maxPathsPerPrefix for a router, a rendezvous
	// hash chooses which. Callers list the preferred node first: when
	// several nodes have the same address, the first keeps its path and
	// the later ones are dropped (logged at V(2)), rather than failing
	// the VIP. (The provider removes such duplicates before, keeping the
	// older Node and telling about the newer one.)
	NextHops         []NextHop
	Communities      []Community
	LargeCommunities []LargeCommunity
	// LocalPref is sent to iBGP routers; 0 leaves it unset (GoBGP then
	// sends 100). eBGP routers never receive LOCAL_PREF.
	LocalPref uint32
	// TransitiveLinkBandwidth sends the next hops' shares as the
	// transitive link-bandwidth community (type 0x00) rather than the
	// non-transitive one (0x40). See linkbandwidth.go.
	TransitiveLinkBandwidth bool
}

// ErrInvalidAdvertisement is wrapped by the errors about advertisements
// the speaker cannot announce.
var ErrInvalidAdvertisement = errors.New("invalid advertisement")

// normalize checks adv and returns a copy with sorted, de-duplicated lists,
// so that equal desired states compare equal. A next hop whose address an
// earlier one in adv.NextHops already has is dropped and returned.
func normalize(adv Advertisement, asn uint32, exportPrefixes []netip.Prefix) (Advertisement, []NextHop, error) {
	bad := func(format string, args ...any) (Advertisement, []NextHop, error) {
		return Advertisement{}, nil, fmt.Errorf("%w %s: %s", ErrInvalidAdvertisement, adv.Prefix, fmt.Sprintf(format, args...))
	}
	p := adv.Prefix
	if !p.IsValid() {
		return bad("no prefix")
	}
	a := p.Addr()
	if a.Is4In6() {
		a = a.Unmap()
		p = netip.PrefixFrom(a, p.Bits()-96)
	}
	if a.Zone() != "" || p.Bits() != a.BitLen() {
		return bad("want a single address (/32 or /128) without zone")
	}
	if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
		return bad("not a unicast address")
	}
	if !withinAny(p, exportPrefixes) {
		return bad("outside the export prefixes (the address pools) %v", exportPrefixes)
	}
	if err := CheckAttributes(asn, adv.Communities, adv.LargeCommunities); err != nil {
		return Advertisement{}, nil, fmt.Errorf("%w %s: %w", ErrInvalidAdvertisement, p, err)
	}
	out := Advertisement{Prefix: p, LocalPref: adv.LocalPref, TransitiveLinkBandwidth: adv.TransitiveLinkBandwidth}

	out.NextHops = make([]NextHop, 0, len(adv.NextHops))
	var dropped []NextHop
	seen := make(map[netip.Addr]bool, len(adv.NextHops))
	for _, h := range adv.NextHops {
		if h.Node == "" {
			return bad("next hop %s has no node name", h.Addr)
		}
		nh := h.Addr.Unmap()
		if !nh.IsValid() || nh.Zone() != "" || nh.IsUnspecified() || nh.IsMulticast() {
			return bad("node %q: next hop %q is not a unicast address without zone", h.Node, h.Addr)
		}
		if nh.Is4() != a.Is4() {
			return bad("node %q: next hop %s is not of the VIP's address family", h.Node, nh)
		}
		if seen[nh] {
			dropped = append(dropped, h)
			continue
		}
		seen[nh] = true
		out.NextHops = append(out.NextHops, NextHop{Node: h.Node, Addr: nh, Rack: h.Rack, Share: min(h.Share, MaxShare)})
	}
	if err := checkShares(out.NextHops); err != nil {
		return bad("%v", err)
	}
	slices.SortFunc(out.NextHops, func(x, y NextHop) int { return cmp.Compare(x.Node, y.Node) })
	for i := 1; i < len(out.NextHops); i++ {
		if out.NextHops[i-1].Node == out.NextHops[i].Node {
			return bad("node %q appears twice", out.NextHops[i].Node)
		}
	}

	out.Communities = slices.Compact(slices.Sorted(slices.Values(adv.Communities)))
	if len(out.Communities) == 0 {
		out.Communities = nil
	}
	lcs := slices.Clone(adv.LargeCommunities)
	slices.SortFunc(lcs, compareLarge)
	out.LargeCommunities = slices.Compact(lcs)
	if len(out.LargeCommunities) == 0 {
		out.LargeCommunities = nil
	}
	return out, dropped, nil
}

// withinAny reports whether p lies within one of prefixes.
func withinAny(p netip.Prefix, prefixes []netip.Prefix) bool {
	for _, e := range prefixes {
		if e.Bits() <= p.Bits() && e.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func compareLarge(x, y LargeCommunity) int {
	if c := cmp.Compare(x.Global, y.Global); c != 0 {
		return c
	}
	if c := cmp.Compare(x.Local1, y.Local1); c != 0 {
		return c
	}
	return cmp.Compare(x.Local2, y.Local2)
}

// Equal reports whether a and b are the same advertisement: the same
// prefix, next hops in the same order, and attributes. The speaker does
// nothing when handed an advertisement equal to the one it announces.
func (a *Advertisement) Equal(b *Advertisement) bool {
	return a.Prefix == b.Prefix && slices.Equal(a.NextHops, b.NextHops) && sameAttributes(a, b)
}

// sameAttributes reports whether a and b carry the same path attributes
// (everything but the next hops). Both are normalized.
func sameAttributes(a, b *Advertisement) bool {
	return a.LocalPref == b.LocalPref && a.TransitiveLinkBandwidth == b.TransitiveLinkBandwidth &&
		slices.Equal(a.Communities, b.Communities) &&
		slices.Equal(a.LargeCommunities, b.LargeCommunities)
}
