package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"
)

var equateNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{})

var (
	vip4 = netip.MustParsePrefix("203.0.113.10/32")
	vip6 = netip.MustParsePrefix("2001:db8:100::10/128")
)

// TestAnnounceAttributes: next hops, identifiers, communities, large
// communities and local preference arrive at an iBGP router as set, for an
// IPv4 and an IPv6 VIP over one IPv4 session; attribute changes replace
// paths under the same identifier; withdrawals remove exactly their paths.
//
// It is long because its steps build on one router's state (which
// identifiers it has seen): a split would repeat the set-up per step.
func TestAnnounceAttributes(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{asn: speakerASN})
	p := r.peer("tor", "")
	p.ASN = speakerASN
	s := startSpeaker(t, Config{Peers: []Peer{p}})
	waitEstablished(t, s, "tor")

	h4 := hops("198.51.100.10", "", 1, 3)
	h6 := hops("2001:db8:ff::10", "", 1, 3)
	comms := []Community{CommunityNoExport, 65000<<16 | 100}
	large := []LargeCommunity{{65000, 1, 2}}
	for _, adv := range []Advertisement{
		{Prefix: vip4, NextHops: h4, Communities: comms, LargeCommunities: large, LocalPref: 200},
		{Prefix: vip6, NextHops: h6, Communities: comms, LargeCommunities: large, LocalPref: 200},
	} {
		if err := s.Announce(ctx, adv); err != nil {
			t.Fatalf("Announce(%s) = %v", adv.Prefix, err)
		}
	}
	r.waitNextHops("both VIPs announced", map[netip.Prefix][]netip.Addr{vip4: addrs(h4), vip6: addrs(h6)})

	wantComms := []Community{65000<<16 | 100, CommunityNoExport}
	for _, got := range r.paths() {
		if !slices.Equal(got.Communities, wantComms) || !slices.Equal(got.Large, large) || got.LocalPref != 200 || got.MED != 0 {
			t.Errorf("path %v: communities %v, large %v, local pref %d, MED %d; want %v, %v, 200, 0",
				got, got.Communities, got.Large, got.LocalPref, got.MED, wantComms, large)
		}
	}
	// The identifiers the router sees are the ones the speaker allocated.
	ids := func() map[netip.Addr]uint32 {
		out := map[netip.Addr]uint32{}
		for _, p := range r.paths() {
			out[p.NextHop] = p.ID
		}
		return out
	}
	before := ids()
	s.mu.Lock()
	for _, prefix := range []netip.Prefix{vip4, vip6} {
		for node, p := range s.vips[prefix].paths {
			if before[p.nextHop] != p.id {
				t.Errorf("%s via %s: router sees identifier %d, speaker allocated %d", prefix, node, before[p.nextHop], p.id)
			}
		}
	}
	s.mu.Unlock()
	if len(before) != 6 {
		t.Fatalf("router has %d paths, want 6", len(before))
	}

	// Changing the communities replaces every path under its identifier.
	_, _, _ = r.counts()
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: h4, Communities: []Community{65000<<16 | 200}, LocalPref: 200}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new communities", func() error {
		for _, p := range r.paths() {
			if p.Prefix == vip4 && !slices.Equal(p.Communities, []Community{65000<<16 | 200}) {
				return fmt.Errorf("%v has communities %v", p, p.Communities)
			}
		}
		return nil
	})
	if diff := cmp.Diff(before, ids(), equateNetip); diff != "" {
		t.Errorf("identifiers changed with the communities (-before +after):\n%s", diff)
	}
	_, withdrawn, _ := r.counts()
	if len(withdrawn) != 0 {
		t.Errorf("changing attributes withdrew %v, want no withdrawal", withdrawn)
	}

	// Withdrawing one node withdraws exactly its path.
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: h4[:2], Communities: []Community{65000<<16 | 200}, LocalPref: 200}); err != nil {
		t.Fatal(err)
	}
	r.waitNextHops("node-3 withdrawn", map[netip.Prefix][]netip.Addr{vip4: addrs(h4[:2]), vip6: addrs(h6)})
	_, withdrawn, _ = r.counts()
	if want := map[pathKey]int{{vip4, before[h4[2].Addr]}: 1}; !maps_equal(withdrawn, want) {
		t.Errorf("withdrawals %v, want %v", withdrawn, want)
	}

	// Withdraw removes the VIP.
	if err := s.Withdraw(ctx, vip6); err != nil {
		t.Fatal(err)
	}
	r.waitNextHops("IPv6 VIP withdrawn", map[netip.Prefix][]netip.Addr{vip4: addrs(h4[:2])})
	if err := s.Withdraw(ctx, vip6); err != nil {
		t.Errorf("Withdraw() of an absent VIP = %v, want nil", err)
	}
}

func maps_equal(a, b map[pathKey]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestInvalidAdvertisements are rejected with ErrInvalidAdvertisement and
// change nothing.
func TestInvalidAdvertisements(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	s := startSpeaker(t, Config{})
	good := hops("198.51.100.10", "", 1, 2)
	for name, adv := range map[string]Advertisement{
		"no prefix":       {NextHops: good},
		"not a host":      {Prefix: netip.MustParsePrefix("203.0.113.0/24"), NextHops: good},
		"family mismatch": {Prefix: vip6, NextHops: good},
		"no node name":    {Prefix: vip4, NextHops: []NextHop{{Addr: netip.MustParseAddr("198.51.100.11")}}},
		"duplicate node":  {Prefix: vip4, NextHops: []NextHop{good[0], {Node: good[0].Node, Addr: good[1].Addr}}},
		"reserved marker": {Prefix: vip4, NextHops: good, LargeCommunities: []LargeCommunity{marker(speakerASN, 3)}},
		"not exported":    {Prefix: netip.MustParsePrefix("192.0.2.10/32"), NextHops: good},
		"too large":       {Prefix: vip4, NextHops: good, Communities: manyCommunities(MaxAttributeBytes/4 + 1)},
	} {
		if err := s.Announce(ctx, adv); !errors.Is(err, ErrInvalidAdvertisement) {
			t.Errorf("%s: Announce() = %v, want ErrInvalidAdvertisement", name, err)
		}
	}
	s.mu.Lock()
	n := len(s.vips)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("invalid advertisements left %d VIPs", n)
	}
	s.Stop()
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: good}); !errors.Is(err, ErrStopped) {
		t.Errorf("Announce() after Stop = %v, want ErrStopped", err)
	}
	s.Stop() // twice is fine
}

// TestImportRejectsEverything: a route the router sends reaches the
// speaker's Adj-RIB-In but never its RIB.
func TestImportRejectsEverything(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{})
	s := startSpeaker(t, Config{Peers: []Peer{r.peer("tor", "")}})
	waitEstablished(t, s, "tor")
	nlri := nlriAny(netip.MustParsePrefix("192.0.2.0/24"))
	if _, err := r.srv.bgp.AddPath(ctx, &api.AddPathRequest{Path: &api.Path{
		Family: familyIPv4, Nlri: nlri,
		Pattrs: []*anypb.Any{originIGP, nextHopAny(nlri, familyIPv4, netip.MustParseAddr("127.0.0.2"))},
	}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "route received", func() error {
		var received uint64
		_ = s.gobgp().ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			for _, as := range p.AfiSafis {
				if as.State != nil {
					received += as.State.Received
				}
			}
		})
		if received == 0 {
			return errors.New("the speaker has not received the router's route")
		}
		return nil
	})
	var rib []string
	if err := s.gobgp().ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyIPv4}, func(d *api.Destination) {
		rib = append(rib, d.Prefix)
	}); err != nil {
		t.Fatal(err)
	}
	if len(rib) != 0 {
		t.Errorf("the speaker's RIB holds %v, want nothing", rib)
	}
}

// TestGracefulRestart: the router sees our graceful-restart capability,
// with the restart time, for both families; without it, nothing.
func TestGracefulRestart(t *testing.T) {
	checkNoLeaks(t)
	for _, enabled := range []bool{true, false} {
		t.Run(fmt.Sprint(enabled), func(t *testing.T) {
			r := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{})
			s := startSpeaker(t, Config{GracefulRestart: GracefulRestart{Enabled: enabled, RestartTime: 90 * time.Second}, Peers: []Peer{r.peer("tor", "")}})
			waitEstablished(t, s, "tor")
			var gr *api.GracefulRestartCapability
			if err := r.srv.bgp.ListPeer(testContext(t), &api.ListPeerRequest{}, func(p *api.Peer) {
				for _, c := range p.State.RemoteCap {
					if m, err := c.UnmarshalNew(); err == nil {
						if g, ok := m.(*api.GracefulRestartCapability); ok {
							gr = g
						}
					}
				}
			}); err != nil {
				t.Fatal(err)
			}
			switch {
			case !enabled && gr != nil:
				t.Errorf("graceful restart disabled, the router sees %v", gr)
			case enabled && (gr == nil || gr.Time != 90 || len(gr.Tuples) != 2):
				t.Errorf("the router sees graceful restart %v, want 90s for both families", gr)
			}
		})
	}
}
