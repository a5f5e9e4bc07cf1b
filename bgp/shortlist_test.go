package bgp

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestShortlistChoosesTheSame: whatever racks the routers have, the
// speaker chooses the same paths from a VIP's shortlist as from all its
// next hops, and the shortlist is never longer than k × (racks + 1).
func TestShortlistChoosesTheSame(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name  string
		nodes int
		racks int // 0: no rack
		k     int
	}{
		{"rackless, fewer nodes than k", 5, 0, 16},
		{"rackless", 200, 0, 16},
		{"few big racks", 300, 3, 16},
		{"many small racks", 300, 40, 4},
		{"racks and rackless nodes", 120, 5, 8},
		{"one path", 50, 4, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hops := randomHops(rng, tt.nodes, tt.racks)
			allViews := []views{{all: true}, {racks: map[string]bool{"rack-1": true}}, {all: true, racks: map[string]bool{}}}
			if tt.racks > 0 {
				every := map[string]bool{}
				for r := range tt.racks {
					every[fmt.Sprintf("rack-%d", r)] = true
				}
				allViews = append(allViews, views{racks: every}, views{all: true, racks: every})
			}
			for i := range 100 {
				vip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
				short, _ := Shortlist(vip, hops, tt.k, true)
				if limit := tt.k * (tt.racks + 1); len(short) > limit {
					t.Fatalf("%s: %d next hops in the shortlist, want at most %d", vip, len(short), limit)
				}
				if !isSubsequence(short, hops) {
					t.Fatalf("%s: the shortlist is not hops' order", vip)
				}
				for _, v := range allViews {
					want := v.choose(rank(vip, hops), tt.k)
					got := v.choose(rank(vip, short), tt.k)
					if !slices.Equal(want, got) {
						t.Fatalf("%s, views %+v: chose %v from the shortlist, %v from all", vip, v, nodesOf(got), nodesOf(want))
					}
				}
			}
		})
	}
}

// TestShortlistWithoutRacks: without byRack the shortlist is the first k
// in rank order, across racks.
func TestShortlistWithoutRacks(t *testing.T) {
	hops := randomHops(rand.New(rand.NewPCG(3, 4)), 60, 6)
	for i := range 50 {
		vip := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		for _, k := range []int{1, 3, 16} {
			short, _ := Shortlist(vip, hops, k, false)
			var want []string
			for _, r := range rank(vip, hops)[:k] {
				want = append(want, r.Node)
			}
			got := hopNames(short)
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("%s, k=%d: shortlist %v, want the first k %v", vip, k, got, want)
			}
		}
	}
}

// TestBarAdmits: a node the shortlist does not hold enters it exactly
// when its Bar admits it.
func TestBarAdmits(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tests := []struct {
		name   string
		nodes  int
		racks  int
		k      int
		byRack bool
	}{
		{"rackless", 40, 0, 16, true},
		{"fewer than k: every node enters", 10, 0, 16, true},
		{"racks", 90, 6, 4, true},
		{"racks, one path in all", 90, 6, 1, false},
		{"a rack not yet full", 30, 10, 4, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hops := randomHops(rng, tt.nodes, tt.racks)
			admitted := 0
			for i := range 200 {
				vip := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
				_, bar := Shortlist(vip, hops, tt.k, tt.byRack)
				newcomer := NextHop{Node: fmt.Sprintf("new-%d", i), Addr: netip.MustParseAddr("192.0.2.1"), Rack: fmt.Sprintf("rack-%d", i%(tt.racks+1))}
				if tt.racks == 0 {
					newcomer.Rack = ""
				}
				after, _ := Shortlist(vip, append(slices.Clone(hops), newcomer), tt.k, tt.byRack)
				entered := slices.ContainsFunc(after, func(h NextHop) bool { return h.Node == newcomer.Node })
				if got := bar.Admits(vip, newcomer.Node, newcomer.Rack); got != entered {
					t.Fatalf("%s: Admits(%s in %q) = %v, but it entered: %v", vip, newcomer.Node, newcomer.Rack, got, entered)
				}
				if entered {
					admitted++
				}
			}
			if admitted == 0 {
				t.Error("no newcomer ever entered: the test checks nothing")
			}
		})
	}
	if !(Bar{}).Admits(netip.MustParseAddr("203.0.113.1"), "any", "") {
		t.Error("the zero Bar must admit every node")
	}
}

func randomHops(rng *rand.Rand, n, racks int) []NextHop {
	hops := make([]NextHop, n)
	a := netip.MustParseAddr("198.51.100.1")
	for i := range hops {
		hops[i] = NextHop{Node: fmt.Sprintf("node-%d-%x", i, rng.Uint32()), Addr: a}
		// One in five nodes has no rack, when there are racks.
		if racks > 0 && rng.IntN(5) > 0 {
			hops[i].Rack = fmt.Sprintf("rack-%d", rng.IntN(racks))
		}
		a = a.Next()
	}
	return hops
}

func isSubsequence(sub, of []NextHop) bool {
	j := 0
	for _, h := range of {
		if j < len(sub) && sub[j] == h {
			j++
		}
	}
	return j == len(sub)
}

func nodesOf(hs []rankedHop) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Node
	}
	return out
}

func hopNames(hs []NextHop) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Node
	}
	return out
}
