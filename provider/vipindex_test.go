package provider

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestVIPIndexLookups: the VIPs a node may carry are those without a
// Local holder of its families and the Local ones with its endpoints; a
// Service's are the ones it holds, and a VIP set again forgets the old.
func TestVIPIndexLookups(t *testing.T) {
	ip := netip.MustParseAddr
	x := newVIPIndex()
	x.set(ip("203.0.113.1"), []string{"default/c4"}, false, nil)
	x.set(ip("2001:db8:100::1"), []string{"default/c6"}, false, nil)
	x.set(ip("203.0.113.2"), []string{"default/l", "default/shared"}, true, []string{"a1", "b1"})
	x.set(ip("203.0.113.3"), []string{"default/l2"}, true, []string{"b1"})
	// Set again: was Local on b1, now Local on a2 only.
	x.set(ip("203.0.113.3"), []string{"default/l2"}, true, []string{"a2"})
	x.set(ip("203.0.113.9"), nil, false, nil) // no holder: nothing

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
