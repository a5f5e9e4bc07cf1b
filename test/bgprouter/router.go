// Package bgprouter runs an in-process GoBGP as the router that the CCM
// binary peers with in integration tests: it accepts the speakers as passive
// neighbors with ADD-PATH receive, and reports the paths it holds.
package bgprouter

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// Options configure [Start].
type Options struct {
	// Address to listen on; default 127.0.0.1.
	Address string
	ASN     uint32
	// Neighbors are the speakers' addresses, with NeighborASN.
	Neighbors   []string
	NeighborASN uint32
}

// Router is a running GoBGP router.
type Router struct {
	srv       *server.BgpServer
	Address   string
	Port      int
	ASN       uint32
	neighbors []string
	// NeighborASN is the speakers' ASN (Options.NeighborASN).
	NeighborASN uint32
}

var families = []*api.Family{
	{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},
	{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST},
}

// Start runs a router until the test ends.
func Start(t testing.TB, o Options) *Router {
	t.Helper()
	if o.Address == "" {
		o.Address = "127.0.0.1"
	}
	l, err := net.Listen("tcp", net.JoinHostPort(o.Address, "0"))
	if err != nil {
		t.Fatalf("bgprouter: finding a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	r := &Router{srv: server.NewBgpServer(), Address: o.Address, Port: port, ASN: o.ASN, neighbors: o.Neighbors, NeighborASN: o.NeighborASN}
	// GoBGP v3's Serve loop has no exit (the bgp package works around it
	// for the speaker); a test router's loop ends with the test process.
	go r.srv.Serve()
	ctx := context.Background()
	t.Cleanup(func() { _ = r.srv.StopBgp(context.Background(), &api.StopBgpRequest{}) })
	if err := r.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: o.ASN, RouterId: "192.0.2.254", ListenPort: int32(port), ListenAddresses: []string{o.Address},
	}}); err != nil {
		t.Fatalf("bgprouter: starting: %v", err)
	}
	for _, n := range o.Neighbors {
		p := &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: n, PeerAsn: o.NeighborASN},
			Transport: &api.Transport{PassiveMode: true},
		}
		for _, fam := range families {
			p.AfiSafis = append(p.AfiSafis, &api.AfiSafi{
				Config:   &api.AfiSafiConfig{Family: fam, Enabled: true},
				AddPaths: &api.AddPaths{Config: &api.AddPathsConfig{Receive: true}},
			})
		}
		if err := r.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: p}); err != nil {
			t.Fatalf("bgprouter: adding neighbor %s: %v", n, err)
		}
	}
	return r
}

// SpeakerConfig is the `bgp:` section of a cloud config that makes the CCM
// one of r's neighbors: the speakers' ASN, a router ID, and r as its one
// peer, tor-a.
func (r *Router) SpeakerConfig() string {
	return fmt.Sprintf(`bgp:
  asn: %d
  routerID: 192.0.2.1
  peers:
  - name: tor-a
    address: %s
    port: %d
    asn: %d
`, r.NeighborASN, r.Address, r.Port, r.ASN)
}

// Endpoint is host:port for the speakers' peer config.
func (r *Router) Endpoint() string { return net.JoinHostPort(r.Address, strconv.Itoa(r.Port)) }

// Established returns the neighbors whose session is up.
func (r *Router) Established() []string {
	var up []string
	_ = r.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.State != nil && p.State.SessionState == api.PeerState_ESTABLISHED {
			up = append(up, p.Conf.NeighborAddress)
		}
	})
	slices.Sort(up)
	return up
}

// NextHops returns, per neighbor, the next hops it sent for each prefix,
// sorted.
func (r *Router) NextHops() (map[string]map[netip.Prefix][]netip.Addr, error) {
	out := map[string]map[netip.Prefix][]netip.Addr{}
	for _, n := range r.neighbors {
		table := map[netip.Prefix][]netip.Addr{}
		for _, fam := range families {
			err := r.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: n, Family: fam}, func(d *api.Destination) {
				for _, p := range d.Paths {
					prefix, hop, err := decode(p)
					if err == nil {
						table[prefix] = append(table[prefix], hop)
					}
				}
			})
			if err != nil {
				return nil, fmt.Errorf("bgprouter: listing paths from %s: %w", n, err)
			}
		}
		for _, hops := range table {
			slices.SortFunc(hops, func(a, b netip.Addr) int { return a.Compare(b) })
		}
		out[n] = table
	}
	return out, nil
}

// Union returns, for each prefix, the next hops any neighbor sent, sorted
// and without repeats.
func (r *Router) Union() (map[netip.Prefix][]netip.Addr, error) {
	per, err := r.NextHops()
	if err != nil {
		return nil, err
	}
	out := map[netip.Prefix][]netip.Addr{}
	for _, table := range per {
		for p, hops := range table {
			out[p] = append(out[p], hops...)
		}
	}
	for p, hops := range out {
		slices.SortFunc(hops, func(a, b netip.Addr) int { return a.Compare(b) })
		out[p] = slices.Compact(hops)
	}
	return out, nil
}

// WaitEstablished waits until every neighbor's session is up.
func (r *Router) WaitEstablished(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(r.Established()) < len(r.neighbors) {
		if time.Now().After(deadline) {
			t.Fatalf("bgprouter: sessions up %v of %v after %s", r.Established(), r.neighbors, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func decode(p *api.Path) (netip.Prefix, netip.Addr, error) {
	m, err := p.Nlri.UnmarshalNew()
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, err
	}
	nlri, ok := m.(*api.IPAddressPrefix)
	if !ok {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("NLRI %T", m)
	}
	a, err := netip.ParseAddr(nlri.Prefix)
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, err
	}
	var hop netip.Addr
	for _, pa := range p.Pattrs {
		m, err := pa.UnmarshalNew()
		if err != nil {
			return netip.Prefix{}, netip.Addr{}, err
		}
		switch v := m.(type) {
		case *api.NextHopAttribute:
			hop, _ = netip.ParseAddr(v.NextHop)
		case *api.MpReachNLRIAttribute:
			if len(v.NextHops) > 0 {
				hop, _ = netip.ParseAddr(v.NextHops[0])
			}
		}
	}
	return netip.PrefixFrom(a, int(nlri.PrefixLen)), hop, nil
}
