package bgprouter

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// speaker is an in-process GoBGP that announces paths to the routers, as
// the CCM's speaker does. With the routers in processes of their own it
// is the only GoBGP server in the test process, so -race sees none of
// GoBGP's package-level state shared between servers.
func speaker(t *testing.T, peers ...*Router) *server.BgpServer {
	t.Helper()
	quiet := log.NewDefaultLogger()
	quiet.SetLevel(log.WarnLevel)
	s := server.NewBgpServer(server.LoggerOption(quiet))
	go s.Serve()
	ctx := context.Background()
	t.Cleanup(func() { _ = s.StopBgp(context.Background(), &api.StopBgpRequest{}) })
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 64512, RouterId: "192.0.2.1", ListenPort: -1}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range peers {
		p := &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: r.Address, PeerAsn: r.ASN},
			Transport: &api.Transport{RemotePort: uint32(r.Port), LocalAddress: "127.0.0.1"},
			Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1}},
		}
		for _, fam := range families {
			p.AfiSafis = append(p.AfiSafis, &api.AfiSafi{
				Config:   &api.AfiSafiConfig{Family: fam, Enabled: true},
				AddPaths: &api.AddPaths{Config: &api.AddPathsConfig{SendMax: 8}},
			})
		}
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: p}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func announce(t *testing.T, s *server.BgpServer, prefix netip.Prefix, hop netip.Addr, id uint32) {
	t.Helper()
	if _, err := s.AddPath(context.Background(), &api.AddPathRequest{Path: ipv4Path(t, prefix, hop, id)}); err != nil {
		t.Fatal(err)
	}
}

func withdraw(t *testing.T, s *server.BgpServer, prefix netip.Prefix, hop netip.Addr, id uint32) {
	t.Helper()
	if err := s.DeletePath(context.Background(), &api.DeletePathRequest{Path: ipv4Path(t, prefix, hop, id)}); err != nil {
		t.Fatal(err)
	}
}

func ipv4Path(t *testing.T, prefix netip.Prefix, hop netip.Addr, id uint32) *api.Path {
	t.Helper()
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: prefix.Addr().String(), PrefixLen: uint32(prefix.Bits())})
	if err != nil {
		t.Fatal(err)
	}
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0})
	if err != nil {
		t.Fatal(err)
	}
	nh, err := anypb.New(&api.NextHopAttribute{NextHop: hop.String()})
	if err != nil {
		t.Fatal(err)
	}
	return &api.Path{Family: families[0], Nlri: nlri, Pattrs: []*anypb.Any{origin, nh}, Identifier: id}
}

// Two routers and a speaker at once, as the reload test runs them: each
// router gets the sessions and the ADD-PATH paths, and reports them.
func TestRoutersReceivePaths(t *testing.T) {
	routers := []*Router{
		Start(t, Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512}),
		Start(t, Options{Address: "127.0.0.5", ASN: 64514, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512}),
	}
	s := speaker(t, routers...)
	vip := netip.MustParsePrefix("203.0.113.10/32")
	hops := []netip.Addr{netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("198.51.100.12")}
	for i, h := range hops {
		announce(t, s, vip, h, uint32(i+1))
	}
	for _, r := range routers {
		r.WaitEstablished(t, time.Minute)
		err := fabric.Eventually(context.Background(), time.Minute, 50*time.Millisecond, func() error {
			u, err := r.Union()
			if err != nil {
				return err
			}
			if !slices.Equal(u[vip], hops) {
				return fmt.Errorf("router %s: %s via %v, want %v", r.Endpoint(), vip, u[vip], hops)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// PathsTo finds one prefix's paths, and a Watch sees the withdrawal of one
// of them and when it arrived.
func TestLookupAndWatch(t *testing.T) {
	r := Start(t, Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	w := r.WatchNeighbor(t, "127.0.0.1")
	s := speaker(t, r)
	vip, other := netip.MustParsePrefix("203.0.113.10/32"), netip.MustParsePrefix("203.0.113.11/32")
	hops := []netip.Addr{netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("198.51.100.12")}
	for i, h := range hops {
		announce(t, s, vip, h, uint32(i+1))
	}
	announce(t, s, other, hops[0], 1)
	r.WaitEstablished(t, time.Minute)
	lookup := func(want []netip.Addr) error {
		got, err := r.PathsTo("127.0.0.1", vip)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s via %v, want %v", vip, got, want)
		}
		return nil
	}
	if err := fabric.Eventually(context.Background(), time.Minute, 50*time.Millisecond, func() error { return lookup(hops) }); err != nil {
		t.Fatal(err)
	}
	if got, err := r.PathsTo("127.0.0.1", netip.MustParsePrefix("203.0.113.12/32")); err != nil || len(got) != 0 {
		t.Errorf("a prefix never announced: got %v, %v; want no paths", got, err)
	}
	if n := w.Withdrawals(); n != 0 {
		t.Errorf("withdrawals before any: %d", n)
	}
	before := time.Now()
	withdraw(t, s, vip, hops[1], 2)
	if err := fabric.Eventually(context.Background(), time.Minute, 50*time.Millisecond, func() error { return lookup(hops[:1]) }); err != nil {
		t.Fatal(err)
	}
	err := fabric.Eventually(context.Background(), time.Minute, 20*time.Millisecond, func() error {
		if n := w.Withdrawals(); n != 1 {
			return fmt.Errorf("withdrawals seen: %d, want 1", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if last := w.Last(); last.Before(before) {
		t.Errorf("last event at %s, before the withdrawal at %s", last, before)
	}
	if err := w.Err(); err != nil {
		t.Error(err)
	}
}
