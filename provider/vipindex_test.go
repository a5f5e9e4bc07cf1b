package provider

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// TestVIPIndexLookups: the VIPs a node may carry are those without a
// Local holder of its families and the Local ones with its endpoints; a
// Service's are the ones it holds, and a VIP set again forgets the old.
func TestVIPIndexLookups(t *testing.T) {
	ip := netip.MustParseAddr
	x := newVIPIndex()
	// The Cluster VIPs' zero bars admit every node: fewer than
	// maxPathsPerPrefix carry them.
	x.set(ip("203.0.113.1"), []string{"default/c4"}, vipPlan{})
	x.set(ip("2001:db8:100::1"), []string{"default/c6"}, vipPlan{})
	x.set(ip("203.0.113.2"), []string{"default/l", "default/shared"}, localPlan("a1", "b1"))
	x.set(ip("203.0.113.3"), []string{"default/l2"}, localPlan("b1"))
	// Set again: was Local on b1, now Local on a2 only.
	x.set(ip("203.0.113.3"), []string{"default/l2"}, localPlan("a2"))
	x.set(ip("203.0.113.9"), nil, vipPlan{}) // no holder: nothing

	sorted := func(m map[netip.Addr]struct{}) []string {
		var out []string
		for vip := range m {
			out = append(out, vip.String())
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		name string
		node candidate
		want []string
	}{
		{"dual-stack node with a Local endpoint", candidate{name: "a1", addrs: []netip.Addr{ip("198.51.100.11"), ip("2001:db8:1::11")}}, []string{"2001:db8:100::1", "203.0.113.1", "203.0.113.2"}},
		{"IPv4 node: no IPv6 VIP", candidate{name: "b1", addrs: []netip.Addr{ip("198.51.100.140")}}, []string{"203.0.113.1", "203.0.113.2"}},
		{"IPv6 node: no IPv4 Cluster VIP, its Local one", candidate{name: "a2", addrs: []netip.Addr{ip("2001:db8:1::12")}}, []string{"2001:db8:100::1", "203.0.113.3"}},
		{"node without addresses: its Local VIPs only", candidate{name: "a1"}, []string{"203.0.113.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[netip.Addr]struct{}{}
			x.ofNode(tc.node, got)
			if diff := cmp.Diff(tc.want, sorted(got)); diff != "" {
				t.Errorf("ofNode(%s) (-want +got):\n%s", tc.node.name, diff)
			}
		})
	}
	for key, want := range map[string][]string{
		"default/shared": {"203.0.113.2"},
		"default/l2":     {"203.0.113.3"},
		"default/gone":   nil,
	} {
		got := map[netip.Addr]struct{}{}
		x.ofService(key, got)
		if diff := cmp.Diff(want, sorted(got)); diff != "" {
			t.Errorf("ofService(%s) (-want +got):\n%s", key, diff)
		}
	}
	x.forget(ip("203.0.113.2"))
	if len(x.bySvc["default/shared"]) != 0 || len(x.byNode["a1"]) != 0 {
		t.Errorf("after forget: bySvc %v, byNode %v, want neither to keep 203.0.113.2", x.bySvc, x.byNode)
	}
}

func localPlan(endpointNodes ...string) vipPlan {
	return vipPlan{local: true, endpointNodes: endpointNodes}
}

// TestVIPIndexShortlist: with more nodes than maxPathsPerPrefix, a node
// change moves a Cluster VIP only when the VIP is announced via the node
// or the node would enter its shortlist; the others cost nothing.
func TestVIPIndexShortlist(t *testing.T) {
	var hops []bgp.NextHop
	a := netip.MustParseAddr("198.51.100.1")
	for i := range 40 {
		hops = append(hops, bgp.NextHop{Node: fmt.Sprintf("n%02d", i), Addr: a})
		a = a.Next()
	}
	const k = 4
	for i := range 30 {
		vip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		// The plan is made with n39 gone (down, or not yet a node).
		short, bar := bgp.Shortlist(vip, hops[:39], k, true)
		x := newVIPIndex()
		x.set(vip, []string{"default/c"}, vipPlan{adv: bgp.Advertisement{NextHops: short}, bar: bar})
		carried := map[string]bool{}
		for _, h := range short {
			carried[h.Node] = true
		}
		withN39, _ := bgp.Shortlist(vip, hops, k, true)
		for _, h := range hops {
			got := map[netip.Addr]struct{}{}
			x.ofNode(candidate{name: h.Node, addrs: []netip.Addr{h.Addr}}, got)
			_, moved := got[vip]
			want := carried[h.Node] || (h.Node == "n39" && slices.ContainsFunc(withN39, func(s bgp.NextHop) bool { return s.Node == "n39" }))
			if moved != want {
				t.Errorf("%s: a change of %s moves it: %v, want %v (carried: %v)", vip, h.Node, moved, want, carried[h.Node])
			}
		}
	}
}
