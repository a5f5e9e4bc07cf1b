package fabric

import (
	"context"
	"maps"
	"net/netip"
	"testing"
)

// TestNextHopWeights reads the weights of a weighted multipath route, of
// a single-gateway route (weight 1) and of no route (none).
func TestNextHopWeights(t *testing.T) {
	Require(t, false)
	ctx := context.Background()
	ns := linkedNamespace(t, "fabw", netip.MustParsePrefix("198.51.100.241/28"))
	if _, err := ns.IP(ctx, "route", "add", "203.0.113.252/32",
		"nexthop", "via", "198.51.100.242", "weight", "16",
		"nexthop", "via", "198.51.100.243", "weight", "256"); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.IP(ctx, "route", "add", "203.0.113.253/32", "via", "198.51.100.244"); err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		dst  string
		want map[netip.Addr]int
	}{
		{"203.0.113.252/32", map[netip.Addr]int{a("198.51.100.242"): 16, a("198.51.100.243"): 256}},
		{"203.0.113.253/32", map[netip.Addr]int{a("198.51.100.244"): 1}},
		{"203.0.113.254/32", map[netip.Addr]int{}},
	} {
		got, err := NextHopWeights(ctx, ns, netip.MustParsePrefix(tc.dst))
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, tc.want) {
			t.Errorf("NextHopWeights(%s) = %v, want %v", tc.dst, got, tc.want)
		}
	}
}

func TestCheckWeightRatio(t *testing.T) {
	a, b, c := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")
	want := map[netip.Addr]int{a: 1, b: 2, c: 3}
	for _, tc := range []struct {
		name string
		got  map[netip.Addr]int
		ok   bool
	}{
		{"exact", map[netip.Addr]int{a: 85, b: 170, c: 255}, true},
		{"FRR 8 hundredths", map[netip.Addr]int{a: 16, b: 33, c: 50}, true},
		{"equal", map[netip.Addr]int{a: 1, b: 1, c: 1}, false},
		{"swapped", map[netip.Addr]int{a: 3, b: 2, c: 1}, false},
		{"missing next hop", map[netip.Addr]int{a: 1, b: 2}, false},
		{"extra next hop", map[netip.Addr]int{a: 1, b: 2, c: 3, netip.MustParseAddr("198.51.100.4"): 1}, false},
		{"no route", map[netip.Addr]int{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckWeightRatio(tc.got, want, 0.02)
			if (err == nil) != tc.ok {
				t.Errorf("CheckWeightRatio(%s) = %v, want ok %v", FormatWeights(tc.got), err, tc.ok)
			}
		})
	}
}
