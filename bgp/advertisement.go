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
}

// Advertisement is the desired state of one VIP.
type Advertisement struct {
	// Prefix is the VIP, a single address (/32 or /128).
	Prefix netip.Prefix
	// NextHops are the eligible nodes, of the VIP's address family. When
	// there are more than maxPathsPerPrefix for a router, a rendezvous
	// hash chooses which.
	NextHops         []NextHop
	Communities      []Community
	LargeCommunities []LargeCommunity
	// LocalPref is sent to iBGP routers; 0 leaves it unset (GoBGP then
	// sends 100). eBGP routers never receive LOCAL_PREF.
	LocalPref uint32
}

// ErrInvalidAdvertisement is wrapped by the errors about advertisements
// the speaker cannot announce.
var ErrInvalidAdvertisement = errors.New("invalid advertisement")

// normalize checks adv and returns a copy with sorted, de-duplicated lists,
// so that equal desired states compare equal.
func normalize(adv Advertisement, asn uint32) (Advertisement, error) {
	bad := func(format string, args ...any) (Advertisement, error) {
		return Advertisement{}, fmt.Errorf("%w %s: %s", ErrInvalidAdvertisement, adv.Prefix, fmt.Sprintf(format, args...))
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
	out := Advertisement{Prefix: p, LocalPref: adv.LocalPref}

	out.NextHops = make([]NextHop, 0, len(adv.NextHops))
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
		out.NextHops = append(out.NextHops, NextHop{Node: h.Node, Addr: nh, Rack: h.Rack})
	}
	slices.SortFunc(out.NextHops, func(x, y NextHop) int { return cmp.Compare(x.Node, y.Node) })
	seen := make(map[netip.Addr]string, len(out.NextHops))
	for i, h := range out.NextHops {
		if i > 0 && out.NextHops[i-1].Node == h.Node {
			return bad("node %q appears twice", h.Node)
		}
		if other, dup := seen[h.Addr]; dup {
			return bad("nodes %q and %q have the same next hop %s", other, h.Node, h.Addr)
		}
		seen[h.Addr] = h.Node
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
	for _, c := range out.LargeCommunities {
		if c.Global == asn && c.Local1 == markerTag {
			return bad("large community %s is in the range %d:%d:* that the speaker reserves for its rack markers", c, asn, markerTag)
		}
	}
	return out, nil
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

// sameAttributes reports whether a and b carry the same path attributes
// (everything but the next hops). Both are normalized.
func sameAttributes(a, b *Advertisement) bool {
	return a.LocalPref == b.LocalPref &&
		slices.Equal(a.Communities, b.Communities) &&
		slices.Equal(a.LargeCommunities, b.LargeCommunities)
}
