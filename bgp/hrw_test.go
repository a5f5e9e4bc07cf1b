package bgp

import (
	"fmt"
	"net/netip"
	"testing"
)

func nodes(n int, rack func(i int) string) []NextHop {
	var out []NextHop
	a := netip.MustParseAddr("198.51.100.1")
	for i := 0; i < n; i++ {
		out = append(out, NextHop{Node: fmt.Sprintf("node-%02d", i), Addr: a, Rack: rack(i)})
		a = a.Next()
	}
	return out
}

func names(hs []rankedHop) map[string]bool {
	m := map[string]bool{}
	for _, h := range hs {
		m[h.Node] = true
	}
	return m
}

// TestWeightIsStable: the weights are a fixed function (replicas and
// restarts choose the same nodes).
func TestWeightIsStable(t *testing.T) {
	w := weight(netip.MustParseAddr("203.0.113.10"), "node-1")
	if w != weight(netip.MustParseAddr("203.0.113.10"), "node-1") {
		t.Fatal("weight is not deterministic")
	}
	if w == weight(netip.MustParseAddr("203.0.113.11"), "node-1") || w == weight(netip.MustParseAddr("203.0.113.10"), "node-2") {
		t.Error("weight ignores the VIP or the node")
	}
	if med(^uint64(0)) != 0 || med(0) != ^uint32(0) {
		t.Error("med: the highest weight must get the lowest MED")
	}
}

// TestChooseMinimalDisruption: removing or adding one node changes each
// VIP's subset by at most that node and one replacement.
func TestChooseMinimalDisruption(t *testing.T) {
	all := nodes(20, func(int) string { return "" })
	v := views{all: true}
	moved := 0
	for i := 0; i < 500; i++ {
		vip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		if i >= 256 {
			vip = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
		}
		before := names(v.choose(rank(vip, all), 16))
		rest := append(append([]NextHop{}, all[:7]...), all[8:]...)
		after := names(v.choose(rank(vip, rest), 16))
		if len(before) != 16 || len(after) != 16 {
			t.Fatalf("%s: %d and %d nodes chosen, want 16", vip, len(before), len(after))
		}
		var gone, came []string
		for n := range before {
			if !after[n] {
				gone = append(gone, n)
			}
		}
		for n := range after {
			if !before[n] {
				came = append(came, n)
			}
		}
		if before["node-07"] {
			moved++
			if len(gone) != 1 || gone[0] != "node-07" || len(came) != 1 {
				t.Errorf("%s: removing node-07 removed %v and added %v", vip, gone, came)
			}
		} else if len(gone)+len(came) != 0 {
			t.Errorf("%s did not use node-07 but changed: -%v +%v", vip, gone, came)
		}
	}
	// 16 of 20: node-07 is in about 80% of the subsets.
	if moved < 300 || moved > 500 {
		t.Errorf("node-07 was in %d of 500 subsets, want about 400", moved)
	}
}

// TestChooseSpreads: every node gets a fair share of the VIPs.
func TestChooseSpreads(t *testing.T) {
	all := nodes(20, func(int) string { return "" })
	v := views{all: true}
	count := map[string]int{}
	for i := 0; i < 2000; i++ {
		vip := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
		for _, h := range v.choose(rank(vip, all), 4) {
			count[h.Node]++
		}
	}
	// 2000 VIPs x 4 / 20 nodes = 400 each.
	for n, c := range count {
		if c < 300 || c > 500 {
			t.Errorf("%s carries %d VIPs, want about 400", n, c)
		}
	}
}

// TestChooseRacks: a rack's routers get the first k of their rack; the
// union never gives a rack more than k.
func TestChooseRacks(t *testing.T) {
	all := nodes(30, func(i int) string { return fmt.Sprintf("rack-%d", i%3) })
	vip := netip.MustParseAddr("203.0.113.10")
	ranked := rank(vip, all)
	for _, tc := range []struct {
		v     views
		k     int
		total int
	}{
		{views{racks: map[string]bool{"rack-0": true}}, 4, 4},
		{views{racks: map[string]bool{"rack-0": true, "rack-1": true, "rack-2": true}}, 4, 12},
		{views{racks: map[string]bool{"rack-0": true, "rack-1": true, "rack-2": true}}, 16, 30},
		{views{all: true, racks: map[string]bool{"rack-0": true}}, 4, -1},
	} {
		got := tc.v.choose(ranked, tc.k)
		perRack := map[string]int{}
		for _, h := range got {
			perRack[h.Rack]++
		}
		for r := range tc.v.racks {
			want := 0
			for _, h := range ranked {
				if h.Rack == r && want < tc.k {
					want++
					if !names(got)[h.Node] {
						t.Errorf("%+v k=%d: %s (rank within %s <= k) not chosen", tc.v, tc.k, h.Node, r)
					}
				}
			}
			if perRack[r] > tc.k {
				t.Errorf("%+v k=%d: %d nodes of %s chosen, want at most %d", tc.v, tc.k, perRack[r], r, tc.k)
			}
		}
		if tc.total >= 0 && len(got) != tc.total {
			t.Errorf("%+v k=%d: %d chosen, want %d", tc.v, tc.k, len(got), tc.total)
		}
		if tc.v.all {
			for _, h := range ranked[:tc.k] {
				if !names(got)[h.Node] {
					t.Errorf("%+v: %s (among the first k overall) not chosen", tc.v, h.Node)
				}
			}
		}
	}
	if got := (views{}).choose(ranked, 4); len(got) != 0 {
		t.Errorf("no routers: %d chosen, want none", len(got))
	}
	if got := (views{racks: map[string]bool{"rack-9": true}}).choose(ranked, 4); len(got) != 0 {
		t.Errorf("a rack without nodes: %d chosen, want none", len(got))
	}
}
