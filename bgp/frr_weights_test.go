package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// sharedHops are hops (nodeHops) with the given shares.
func sharedHops(as []netip.Addr, shares ...uint32) []NextHop {
	hs := nodeHops(as)
	for i := range hs {
		hs[i].Share = shares[i]
	}
	return hs
}

// ratio maps each address to its share.
func ratio(as []netip.Addr, shares ...int) map[netip.Addr]int {
	out := map[netip.Addr]int{}
	for i, a := range as {
		out[a] = shares[i]
	}
	return out
}

// waitWeights waits until the ToR's kernel route for dst has want's
// next hops with weights in want's ratio (within FRR's rounding to
// hundredths of the total), and returns the weights.
func (r *tor) waitWeights(t *testing.T, dst netip.Prefix, want map[netip.Addr]int) map[netip.Addr]int {
	t.Helper()
	var got map[netip.Addr]int
	eventually(t, fmt.Sprintf("kernel route %s with weights %s", dst, fabric.FormatWeights(want)), func() error {
		var err error
		if got, err = fabric.NextHopWeights(context.Background(), r.ns, dst); err != nil {
			return err
		}
		return fabric.CheckWeightRatio(got, want, 0.02)
	})
	return got
}

// linkBandwidths returns FRR's extended communities of each path of
// prefix, by next hop.
func (r *tor) linkBandwidths(t *testing.T, prefix netip.Prefix) map[string]string {
	t.Helper()
	paths, err := r.frr.BGPPaths(context.Background(), prefix.String())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range paths {
		ec := ""
		if p.ExtendedCommunity != nil {
			ec = p.ExtendedCommunity.String
		}
		for _, nh := range p.Nexthops {
			if nh.Afi == "ipv4" || nh.Afi == "ipv6" && !strings.HasPrefix(nh.IP, "fe80:") {
				out[nh.IP] = ec
			}
		}
	}
	return out
}

// TestFRRWeightedECMP: FRR as the ToR turns the shares into kernel
// next-hop weights in their ratio, for IPv4 and IPv6 VIPs; one node's
// share changing changes the weights; next hops without shares get equal
// weights and no community; the transitive form is weighted alike; a ToR told to ignore the community
// ("bgp bestpath bandwidth ignore") installs plain ECMP.
func TestFRRWeightedECMP(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := newToR(t, 15, torConfig{})
	s := startSpeaker(t, Config{Peers: []Peer{r.peer(0)}})
	waitEstablished(t, s, "tor")

	n4, n6 := r.nodes4, r.nodes6
	if err := s.SetAll(ctx, []Advertisement{
		{Prefix: vip4, NextHops: sharedHops(n4, 1, 2, 3)},
		{Prefix: vip6, NextHops: sharedHops(n6, 1, 2, 3)},
	}); err != nil {
		t.Fatal(err)
	}
	w4 := r.waitWeights(t, vip4, ratio(n4, 1, 2, 3))
	w6 := r.waitWeights(t, vip6, ratio(n6, 1, 2, 3))
	t.Logf("1:2:3 -> IPv4 weights %s, IPv6 weights %s", fabric.FormatWeights(w4), fabric.FormatWeights(w6))
	for _, fam := range []string{"-4", "-6"} {
		out, _ := r.ns.IP(ctx, fam, "route", "show", "proto", "bgp")
		t.Logf("ToR kernel routes (ip %s route show proto bgp):\n%s", fam, out)
	}
	lbs := r.linkBandwidths(t, vip4)
	for i, want := range []string{"LB:64512:125000 (1.000 Mbps)", "LB:64512:250000 (2.000 Mbps)", "LB:64512:375000 (3.000 Mbps)"} {
		if got := lbs[n4[i].String()]; got != want {
			t.Errorf("FRR's extended community of the path via %s = %q, want %q", n4[i], got, want)
		}
	}

	// node-1 scales from 1 to 3 endpoints.
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: sharedHops(n4, 3, 2, 3)}); err != nil {
		t.Fatal(err)
	}
	w4 = r.waitWeights(t, vip4, ratio(n4, 3, 2, 3))
	t.Logf("3:2:3 -> IPv4 weights %s", fabric.FormatWeights(w4))

	// No shares (a Cluster Service): equal weights, no community.
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: nodeHops(n4)}); err != nil {
		t.Fatal(err)
	}
	w4 = r.waitWeights(t, vip4, ratio(n4, 1, 1, 1))
	for nh, ec := range r.linkBandwidths(t, vip4) {
		if ec != "" {
			t.Errorf("the path via %s carries %q, want no extended community", nh, ec)
		}
	}
	t.Logf("no shares -> IPv4 weights %s", fabric.FormatWeights(w4))

	// The transitive form (type 0x00) is weighted too.
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: sharedHops(n4, 1, 2, 3), TransitiveLinkBandwidth: true}); err != nil {
		t.Fatal(err)
	}
	w4 = r.waitWeights(t, vip4, ratio(n4, 1, 2, 3))
	t.Logf("1:2:3, transitive -> IPv4 weights %s", fabric.FormatWeights(w4))
}

// TestFRRIgnoresLinkBandwidth: a router that ignores the community gets
// plain ECMP over every node; nothing else changes.
func TestFRRIgnoresLinkBandwidth(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := newToR(t, 15, torConfig{bestpath: "bgp bestpath bandwidth ignore"})
	s := startSpeaker(t, Config{Peers: []Peer{r.peer(0)}})
	waitEstablished(t, s, "tor")
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: sharedHops(r.nodes4, 1, 2, 3)}); err != nil {
		t.Fatal(err)
	}
	w := r.waitWeights(t, vip4, ratio(r.nodes4, 1, 1, 1))
	if lbs := r.linkBandwidths(t, vip4); len(lbs) != 3 || lbs[r.nodes4[2].String()] == "" {
		t.Errorf("FRR's paths %v, want three, each with its link bandwidth", lbs)
	}
	t.Logf("ignore: 1:2:3 -> IPv4 weights %s", fabric.FormatWeights(w))
}
