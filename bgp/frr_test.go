package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
	api "github.com/osrg/gobgp/v3/api"
)

// tor is an FRR router in its own namespace, connected to the root
// namespace (where the speaker runs) by a veth on a /28 and a /64 of its
// own: the ToR is at offset 1 in both, the root side at 2 (and 3), and the
// nodes at 11-13, on the same subnets, so that zebra can install ECMP
// routes via them.
type tor struct {
	frr    *fabric.FRR
	ns     *fabric.Namespace
	addr4  netip.Addr // the ToR
	addr6  netip.Addr
	root4  []netip.Addr // the root namespace's addresses
	nodes4 []netip.Addr
	nodes6 []netip.Addr
}

// torConfig is the FRR configuration: eBGP with the speaker (AS 64512),
// ECMP over up to 16 paths in both families.
type torConfig struct {
	password string // for every neighbor
	network  string // a prefix FRR originates towards the speaker
	bestpath string // a "bgp bestpath ..." line, if any
}

// newToR builds the ToR on subnet index sub (0-15: 198.51.100.16*sub/28,
// 2001:db8:ff:sub::/64). Tests use distinct indexes so that they never
// share addresses.
func newToR(t *testing.T, sub int, c torConfig) *tor {
	t.Helper()
	fabric.Require(t, true)
	name := fabric.UniqueName("bgpt")
	base4 := netip.AddrFrom4([4]byte{198, 51, 100, byte(16 * sub)})
	base6 := netip.MustParseAddr(fmt.Sprintf("2001:db8:ff:%x::", sub))
	at := func(base netip.Addr, n int) netip.Addr {
		for i := 0; i < n; i++ {
			base = base.Next()
		}
		return base
	}
	r := &tor{addr4: at(base4, 1), addr6: at(base6, 1), root4: []netip.Addr{at(base4, 2), at(base4, 3)}}
	for i := 11; i <= 13; i++ {
		r.nodes4 = append(r.nodes4, at(base4, i))
		r.nodes6 = append(r.nodes6, at(base6, i))
	}
	r.ns = fabric.NewNamespace(t, name)
	fabric.Veth(t, name+"r", fabric.Root, name+"t", r.ns)
	fabric.AddAddr(t, r.ns, name+"t", netip.PrefixFrom(r.addr4, 28))
	fabric.AddAddr(t, r.ns, name+"t", netip.PrefixFrom(r.addr6, 64))
	for i, a := range r.root4 {
		fabric.AddAddr(t, fabric.Root, name+"r", netip.PrefixFrom(a, 28))
		fabric.AddAddr(t, fabric.Root, name+"r", netip.PrefixFrom(at(base6, 2+i), 64))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp network import-check\n", routerASN, r.addr4)
	if c.bestpath != "" {
		fmt.Fprintf(&b, " %s\n", c.bestpath)
	}
	for _, n := range r.root4 {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n", n, speakerASN, n)
		if c.password != "" {
			fmt.Fprintf(&b, " neighbor %s password %s\n", n, c.password)
		}
	}
	b.WriteString(" address-family ipv4 unicast\n  maximum-paths 16\n")
	if c.network != "" {
		fmt.Fprintf(&b, "  network %s\n", c.network)
	}
	b.WriteString(" exit-address-family\n address-family ipv6 unicast\n  maximum-paths 16\n")
	for _, n := range r.root4 {
		fmt.Fprintf(&b, "  neighbor %s activate\n", n)
	}
	b.WriteString(" exit-address-family\n")
	r.frr = fabric.StartFRR(t, r.ns, t.TempDir(), b.String())
	return r
}

// peer is the speaker's Peer for this ToR, connecting from root4[i].
func (r *tor) peer(i int) Peer {
	return Peer{Name: "tor", Address: r.addr4, ASN: routerASN, LocalAddress: r.root4[i]}
}

func nodeHops(as []netip.Addr) []NextHop {
	var out []NextHop
	for i, a := range as {
		out = append(out, NextHop{Node: fmt.Sprintf("node-%d", i+1), Addr: a})
	}
	return out
}

// waitKernelRoute waits until the ToR's kernel route for dst has exactly
// the gateways want (none: no route).
func (r *tor) waitKernelRoute(t *testing.T, dst netip.Prefix, want []netip.Addr) {
	t.Helper()
	want = slices.Clone(want)
	slices.SortFunc(want, netip.Addr.Compare)
	eventually(t, fmt.Sprintf("kernel route %s via %v", dst, want), func() error {
		routes, err := fabric.Routes(context.Background(), r.ns, dst)
		if err != nil {
			return err
		}
		var got []netip.Addr
		for _, rt := range routes {
			got = append(got, rt.Gateways()...)
		}
		slices.SortFunc(got, netip.Addr.Compare)
		if !slices.Equal(got, want) {
			return fmt.Errorf("kernel route via %v", got)
		}
		return nil
	})
}

// TestFRRECMP: FRR as the ToR gets one path per node, marks all of them
// multipath and installs an N-way ECMP route, for IPv4 and IPv6 VIPs;
// withdrawing one node removes exactly its next hop; what FRR announces
// never enters the speaker's RIB.
//
// It is long because its steps build on one FRR router's state: a split
// would start FRR once per step.
func TestFRRECMP(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := newToR(t, 1, torConfig{network: "192.0.2.0/24"})
	s := startSpeaker(t, Config{Peers: []Peer{r.peer(0)}})
	waitEstablished(t, s, "tor")

	h4, h6 := nodeHops(r.nodes4), nodeHops(r.nodes6)
	if err := s.SetAll(ctx, []Advertisement{{Prefix: vip4, NextHops: h4}, {Prefix: vip6, NextHops: h6}}); err != nil {
		t.Fatal(err)
	}
	r.waitKernelRoute(t, vip4, r.nodes4)
	r.waitKernelRoute(t, vip6, r.nodes6)
	for _, fam := range []string{"-4", "-6"} {
		out, _ := r.ns.IP(ctx, fam, "route", "show", "proto", "bgp")
		t.Logf("ToR kernel routes (ip %s route show proto bgp):\n%s", fam, out)
	}
	for _, vip := range []netip.Prefix{vip4, vip6} {
		paths, err := r.frr.BGPPaths(ctx, vip.String())
		if err != nil {
			t.Fatal(err)
		}
		if len(paths) != 3 {
			t.Errorf("FRR has %d paths for %s, want 3", len(paths), vip)
		}
		ids := map[int]bool{}
		for i, p := range paths {
			if !p.Valid || !p.Multipath {
				t.Errorf("FRR path %d for %s: valid %v, multipath %v; want both", i, vip, p.Valid, p.Multipath)
			}
			ids[p.AddPathRx] = true
		}
		if len(ids) != 3 {
			t.Errorf("FRR received path identifiers %v for %s, want 3 distinct", ids, vip)
		}
	}
	st := s.Peers()[0]
	for _, f := range st.Families {
		if !f.Negotiated || !f.AddPath || f.Paths != 3 {
			t.Errorf("Peers() %s = %+v, want ADD-PATH and 3 paths", f.Family, f)
		}
	}

	// Withdraw node-2: exactly its next hop leaves the kernel route.
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: []NextHop{h4[0], h4[2]}}); err != nil {
		t.Fatal(err)
	}
	r.waitKernelRoute(t, vip4, []netip.Addr{r.nodes4[0], r.nodes4[2]})
	if err := s.Announce(ctx, Advertisement{Prefix: vip6, NextHops: []NextHop{h6[0], h6[2]}}); err != nil {
		t.Fatal(err)
	}
	r.waitKernelRoute(t, vip6, []netip.Addr{r.nodes6[0], r.nodes6[2]})

	// FRR announces 192.0.2.0/24: received, not accepted.
	eventually(t, "FRR's route received", func() error {
		var received uint64
		if err := s.gobgp().ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			for _, as := range p.AfiSafis {
				if as.State != nil {
					received += as.State.Received
				}
			}
		}); err != nil {
			return err
		}
		if received == 0 {
			return fmt.Errorf("nothing received from FRR")
		}
		return nil
	})
	var rib []string
	if err := s.gobgp().ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyIPv4}, func(d *api.Destination) {
		rib = append(rib, d.Prefix)
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rib, []string{vip4.String()}) {
		t.Errorf("the speaker's IPv4 RIB holds %v, want only %s", rib, vip4)
	}

	// Withdraw the VIPs: the routes go.
	if err := s.SetAll(ctx, nil); err != nil {
		t.Fatal(err)
	}
	r.waitKernelRoute(t, vip4, nil)
	r.waitKernelRoute(t, vip6, nil)
}

// TestFRRMD5: with the right TCP MD5 password the session comes up, with a
// wrong one it does not.
func TestFRRMD5(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := newToR(t, 2, torConfig{password: "s3cret"})

	good := r.peer(0)
	good.PasswordFile = writeFile(t, "s3cret\n")
	s := startSpeaker(t, Config{Peers: []Peer{good}})
	waitEstablished(t, s, "tor")
	eventually(t, "FRR sees the session", func() error {
		st, err := r.frr.BGPNeighborState(ctx, good.LocalAddress.String())
		if err == nil && st != "Established" {
			err = fmt.Errorf("FRR's neighbor %s is %s", good.LocalAddress, st)
		}
		return err
	})
	s.Stop()

	bad := r.peer(1)
	bad.PasswordFile = writeFile(t, "wrong")
	s2 := startSpeaker(t, Config{Peers: []Peer{bad}})
	deadline := time.Now().Add(6 * time.Second) // several connection attempts
	for time.Now().Before(deadline) {
		if p := s2.Peers()[0]; p.State == StateEstablished {
			t.Fatalf("the session with a wrong password is %v", p.State)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st, err := r.frr.BGPNeighborState(ctx, bad.LocalAddress.String()); err != nil || st == "Established" {
		t.Errorf("FRR's neighbor with the wrong password: %q, %v; want not Established", st, err)
	}
}
