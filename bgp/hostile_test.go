package bgp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestHostileAttributes: a VIP whose communities do not fit a BGP UPDATE
// is refused before GoBGP sees it, for IPv4 and IPv6 (GoBGP crashed on
// the first and silently dropped the second), and the other VIPs and the
// session carry on. The largest VIP the bound allows reaches the router
// whole, so the bound is not too large for either family.
func TestHostileAttributes(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{})
	s := startSpeaker(t, Config{Peers: []Peer{r.peer("tor", "")}})
	waitEstablished(t, s, "tor")
	h4, h6 := hops("198.51.100.10", "", 1, 2), hops("2001:db8:ff::10", "", 1, 2)
	good := Advertisement{Prefix: netip.MustParsePrefix("203.0.113.50/32"), NextHops: h4}
	if err := s.Announce(ctx, good); err != nil {
		t.Fatal(err)
	}
	most := manyCommunities(MaxAttributeBytes / 4)
	for name, tc := range map[string]struct {
		adv     Advertisement
		wantErr error
	}{
		"IPv4, 1100 communities":     {Advertisement{Prefix: vip4, NextHops: h4, Communities: manyCommunities(1100)}, ErrInvalidAttributes},
		"IPv6, 1100 communities":     {Advertisement{Prefix: vip6, NextHops: h6, Communities: manyCommunities(1100)}, ErrInvalidAttributes},
		"IPv4, one over the bound":   {Advertisement{Prefix: vip4, NextHops: h4, Communities: manyCommunities(MaxAttributeBytes/4 + 1)}, ErrInvalidAttributes},
		"IPv6, as many as may be":    {Advertisement{Prefix: vip6, NextHops: h6, Communities: most, LocalPref: 200}, nil},
		"IPv4, as many as may be":    {Advertisement{Prefix: vip4, NextHops: h4, Communities: most, LocalPref: 200}, nil},
		"IPv6, large ones too large": {Advertisement{Prefix: vip6, NextHops: h6, LargeCommunities: manyLarge(MaxAttributeBytes/12 + 1)}, ErrInvalidAttributes},
	} {
		err := s.Announce(ctx, tc.adv)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil && !errors.Is(err, ErrInvalidAdvertisement)) {
			t.Errorf("%s: Announce() = %v, want %v", name, err, tc.wantErr)
		}
		want := map[netip.Prefix][]netip.Addr{good.Prefix: addrs(h4)}
		if tc.wantErr == nil {
			want[tc.adv.Prefix] = addrs(tc.adv.NextHops)
		}
		r.waitNextHops(name, want)
		for _, p := range r.paths() {
			if p.Prefix == tc.adv.Prefix && len(p.Communities) != len(most) {
				t.Errorf("%s: the router got %d communities, want %d", name, len(p.Communities), len(most))
			}
		}
		if err := s.Withdraw(ctx, tc.adv.Prefix); err != nil {
			t.Fatal(err)
		}
	}
	r.waitNextHops("only the good VIP", map[netip.Prefix][]netip.Addr{good.Prefix: addrs(h4)})
	if _, _, e := r.counts(); e != 1 {
		t.Errorf("the session was established %d times, want once", e)
	}
}

func manyLarge(n int) []LargeCommunity {
	out := make([]LargeCommunity, n)
	for i := range out {
		out[i] = LargeCommunity{65000, 7, uint32(i)}
	}
	return out
}

// TestExportPolicyGuard: GoBGP exports only paths within the export
// prefixes, whatever reaches its RIB; changing the prefixes resets no
// session.
func TestExportPolicyGuard(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{})
	cfg := Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), Peers: []Peer{r.peer("tor", "")},
		ExportPrefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/25"), netip.MustParsePrefix("2001:db8:100::/48")}}
	s := startSpeaker(t, cfg)
	waitEstablished(t, s, "tor")
	// Straight into the RIB, past Announce's own check.
	outside := routePath{Attrs: &pathAttributes{Prefix: netip.MustParsePrefix("203.0.113.200/32")}, ID: 1, NextHop: netip.MustParseAddr("198.51.100.1")}
	if _, err := s.gobgp().AddPath(ctx, &api.AddPathRequest{Path: apiPath(&outside)}); err != nil {
		t.Fatal(err)
	}
	h4, h6 := hops("198.51.100.10", "", 1, 1), hops("2001:db8:ff::10", "", 1, 1)
	if err := s.SetAll(ctx, []Advertisement{{Prefix: vip4, NextHops: h4}, {Prefix: vip6, NextHops: h6}}); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix][]netip.Addr{vip4: addrs(h4), vip6: addrs(h6)}
	r.waitNextHops("only the VIPs within the export prefixes", want)
	if err := s.Announce(ctx, Advertisement{Prefix: outside.Attrs.Prefix, NextHops: h4}); !errors.Is(err, ErrInvalidAdvertisement) {
		t.Errorf("Announce(outside the export prefixes) = %v, want ErrInvalidAdvertisement", err)
	}
	cfg.ExportPrefixes = append(cfg.ExportPrefixes, netip.MustParsePrefix("198.51.100.0/24"))
	if err := s.Reconfigure(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	other := Advertisement{Prefix: netip.MustParsePrefix("198.51.100.200/32"), NextHops: h4}
	if err := s.Announce(ctx, other); err != nil {
		t.Fatalf("Announce(within the new prefixes) = %v", err)
	}
	want[other.Prefix] = addrs(h4)
	r.waitNextHops("the new prefixes exported", want)
	if _, _, e := r.counts(); e != 1 {
		t.Errorf("the session was established %d times, want once", e)
	}
}

// TestMaxPrefixes: a router that sends more prefixes than its limit has
// its session closed, the speaker's memory stays bounded, and Peers
// counts it.
func TestMaxPrefixes(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{noUpdateWatch: true})
	const routes = 100_000
	addRouterRoutes(t, r, routes)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	p := r.peer("leaky", "")
	p.MaxPrefixes = 1000
	// A long hold time: under the race detector, the router takes
	// seconds to send its table, and keepalives queue behind it.
	s := startSpeaker(t, Config{Peers: []Peer{p}, HoldTime: 120 * time.Second})
	eventually(t, "the prefix limit hit and the session closed", func() error {
		for _, st := range s.Peers() {
			if st.PrefixLimitExceeded != 1 || st.State == StateEstablished {
				return fmt.Errorf("%s: %v, prefix limit exceeded %d times", st.Name, st.State, st.PrefixLimitExceeded)
			}
		}
		return nil
	})
	if st := s.Peers()[0]; st.MaxPrefixes != 1000 {
		t.Errorf("Peers() = %+v, want maxPrefixes 1000", st)
	}
	var received uint64
	_ = s.gobgp().ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: false}, func(p *api.Peer) {
		for _, as := range p.AfiSafis {
			if as.State != nil {
				received += as.State.Received
			}
		}
	})
	if received > 1000 {
		t.Errorf("the speaker holds %d of the router's routes, want at most 1000", received)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// 100k routes in the Adj-RIB-In cost more than 30 MB.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 15<<20 {
		t.Errorf("the heap grew by %d MiB while the router sent %d routes", grew>>20, routes)
	}
}

// addRouterRoutes makes r announce n IPv6 routes of its own: /64s of
// 2001:db8::/32 (documentation addresses), next hop 2001:db8::fe.
func addRouterRoutes(t *testing.T, r *testRouter, n int) {
	t.Helper()
	ctx := context.Background()
	nh := netip.MustParseAddr("2001:db8::fe")
	var wg sync.WaitGroup
	errs := make(chan error, reconcileWorkers)
	for w := range reconcileWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += reconcileWorkers {
				a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
				nlri := nlriAny(netip.PrefixFrom(a, 64))
				if _, err := r.srv.bgp.AddPath(ctx, &api.AddPathRequest{Path: &api.Path{
					Family: familyIPv6, Nlri: nlri, Pattrs: []*anypb.Any{originIGP, nextHopAny(nlri, familyIPv6, nh)},
				}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("adding the router's routes: %v", err)
	}
}

// TestTTLSecurity: with GTSM on both sides the session comes up, and
// GoBGP has the speaker's side configured for a directly connected router.
func TestTTLSecurity(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	r := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{ttlSecurity: true})
	p := r.peer("gtsm", "")
	p.TTLSecurity = 1
	s := startSpeaker(t, Config{Peers: []Peer{p}})
	waitEstablished(t, s, "gtsm")
	var ttl *api.TtlSecurity
	_ = s.gobgp().ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) { ttl = p.TtlSecurity })
	if ttl == nil || !ttl.Enabled || ttl.TtlMin != 255 {
		t.Errorf("GoBGP's TTL security = %v, want enabled with minimum TTL 255", ttl)
	}
}

// TestListenAddresses: with listen addresses, the speaker listens on them
// only.
func TestListenAddresses(t *testing.T) {
	checkNoLeaks(t)
	port := freePort(t, "127.0.0.5")
	s := startSpeaker(t, Config{ListenPort: port, ListenAddresses: []netip.Addr{netip.MustParseAddr("127.0.0.5")}})
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.5:%d", port), 5*time.Second)
	if err != nil {
		t.Errorf("dialing the listen address: %v", err)
	} else {
		c.Close()
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second); err == nil {
		c.Close()
		t.Errorf("the speaker listens on 127.0.0.1:%d too", port)
	}
	s.Stop()
}
