// Package bgprouter runs GoBGP as the router that the CCM binary peers
// with in integration tests: it accepts the speakers as passive neighbors
// with ADD-PATH receive, and reports the paths it holds.
//
// Each router is a process of its own (see process.go), driven over
// GoBGP's gRPC API on a unix socket: GoBGP keeps route-selection options
// in package variables that StartBgp writes and every running server
// reads, so two servers in one process race (go test -race reports it).
package bgprouter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
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
	proc      *process
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

// callTimeout bounds one API call; generous for a busy machine.
const callTimeout = 30 * time.Second

// listenAttempts bounds the retries of StartBgp when the free port found
// was taken by someone else before GoBGP bound it.
const listenAttempts = 5

// Start runs a router until the test ends.
func Start(t testing.TB, o Options) *Router {
	t.Helper()
	if o.Address == "" {
		o.Address = "127.0.0.1"
	}
	p, err := startProcess(t)
	if err != nil {
		t.Fatalf("bgprouter: %v", err)
	}
	r := &Router{proc: p, Address: o.Address, ASN: o.ASN, neighbors: o.Neighbors, NeighborASN: o.NeighborASN}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var errs []error
	for range listenAttempts {
		if r.Port, err = freePort(o.Address); err != nil {
			t.Fatalf("bgprouter: %v", err)
		}
		_, err = p.api.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
			Asn: o.ASN, RouterId: "192.0.2.254", ListenPort: int32(r.Port), ListenAddresses: []string{o.Address},
		}})
		if err == nil {
			break
		}
		errs = append(errs, err)
	}
	if err != nil {
		t.Fatalf("bgprouter: starting BGP on %s: %v", o.Address, errors.Join(errs...))
	}
	for _, n := range o.Neighbors {
		peer := &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: n, PeerAsn: o.NeighborASN},
			Transport: &api.Transport{PassiveMode: true},
		}
		for _, fam := range families {
			peer.AfiSafis = append(peer.AfiSafis, &api.AfiSafi{
				Config:   &api.AfiSafiConfig{Family: fam, Enabled: true},
				AddPaths: &api.AddPaths{Config: &api.AddPathsConfig{Receive: true}},
			})
		}
		if _, err := p.api.AddPeer(ctx, &api.AddPeerRequest{Peer: peer}); err != nil {
			t.Fatalf("bgprouter: adding neighbor %s: %v", n, err)
		}
	}
	return r
}

// freePort returns a TCP port on address that was free a moment ago.
func freePort(address string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(address, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
func (r *Router) Established() ([]string, error) {
	states, err := r.States()
	if err != nil {
		return nil, err
	}
	var up []string
	for n, st := range states {
		if st == api.PeerState_ESTABLISHED {
			up = append(up, n)
		}
	}
	slices.Sort(up)
	return up, nil
}

// States returns each neighbor's session state. A GoBGP router refuses a
// neighbor's connections while it is IDLE: for 5 s after a session ended
// (its idle hold time), then it is ACTIVE again (passive, listening).
func (r *Router) States() (map[string]api.PeerState_SessionState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	stream, err := r.proc.api.ListPeer(ctx, &api.ListPeerRequest{})
	if err != nil {
		return nil, fmt.Errorf("bgprouter: listing peers: %w", err)
	}
	states := map[string]api.PeerState_SessionState{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return states, nil
		}
		if err != nil {
			return nil, fmt.Errorf("bgprouter: listing peers: %w", err)
		}
		p := resp.GetPeer()
		states[p.GetConf().GetNeighborAddress()] = p.GetState().GetSessionState()
	}
}

// NextHops returns, per neighbor, the next hops it sent for each prefix,
// sorted.
func (r *Router) NextHops() (map[string]map[netip.Prefix][]netip.Addr, error) {
	out := map[string]map[netip.Prefix][]netip.Addr{}
	for _, n := range r.neighbors {
		table, err := r.Paths(n)
		if err != nil {
			return nil, err
		}
		out[n] = table
	}
	return out, nil
}

// Paths returns the next hops one neighbor sent for each prefix, sorted.
func (r *Router) Paths(neighbor string) (map[netip.Prefix][]netip.Addr, error) {
	table := map[netip.Prefix][]netip.Addr{}
	for _, fam := range families {
		if err := r.listAdjIn(neighbor, fam, func(d *api.Destination) {
			for _, p := range d.GetPaths() {
				prefix, hop, err := decode(p)
				if err == nil {
					table[prefix] = append(table[prefix], hop)
				}
			}
		}); err != nil {
			return nil, fmt.Errorf("bgprouter: listing paths from %s: %w", neighbor, err)
		}
	}
	for _, hops := range table {
		slices.SortFunc(hops, func(a, b netip.Addr) int { return a.Compare(b) })
	}
	return table, nil
}

// PathsTo returns the next hops one neighbor sent for one prefix, sorted:
// a lookup that costs the same however many prefixes the router holds.
func (r *Router) PathsTo(neighbor string, prefix netip.Prefix) ([]netip.Addr, error) {
	fam := families[0]
	if prefix.Addr().Is6() {
		fam = families[1]
	}
	var hops []netip.Addr
	if err := r.listAdjIn(neighbor, fam, func(d *api.Destination) {
		for _, p := range d.GetPaths() {
			if got, hop, err := decode(p); err == nil && got == prefix {
				hops = append(hops, hop)
			}
		}
	}, &api.TableLookupPrefix{Prefix: prefix.String()}); err != nil {
		return nil, fmt.Errorf("bgprouter: looking up %s from %s: %w", prefix, neighbor, err)
	}
	slices.SortFunc(hops, func(a, b netip.Addr) int { return a.Compare(b) })
	return hops, nil
}

// listAdjIn calls f for each destination neighbor sent, of the family, or
// only those of prefixes if any are given.
func (r *Router) listAdjIn(neighbor string, fam *api.Family, f func(*api.Destination), prefixes ...*api.TableLookupPrefix) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	stream, err := r.proc.api.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: neighbor, Family: fam, Prefixes: prefixes})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		f(resp.GetDestination())
	}
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
	r.WaitEstablishedWith(t, timeout, r.neighbors...)
}

// WaitEstablishedWith waits until the sessions with these neighbors are up,
// whichever the others are.
func (r *Router) WaitEstablishedWith(t testing.TB, timeout time.Duration, neighbors ...string) {
	t.Helper()
	err := fabric.Eventually(context.Background(), timeout, 100*time.Millisecond, func() error {
		up, err := r.Established()
		if err != nil {
			return err
		}
		for _, n := range neighbors {
			if !slices.Contains(up, n) {
				return fmt.Errorf("sessions up %v, want %v", up, neighbors)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bgprouter: %v", err)
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

// Originate makes the router send every neighbor n IPv6 routes of its own,
// /64s of 2001:db8::/32 with next hop 2001:db8::fe: a router that leaks a
// table. They are sent in batches over one API stream.
func (r *Router) Originate(n int) error {
	if n > 1<<32 {
		return fmt.Errorf("bgprouter: %d routes: at most %d /64s fit 2001:db8::/32", n, 1<<32)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*callTimeout)
	defer cancel()
	stream, err := r.proc.api.AddPathStream(ctx)
	if err != nil {
		return fmt.Errorf("bgprouter: opening a path stream: %w", err)
	}
	fam := families[1]
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0})
	if err != nil {
		return err
	}
	const batch = 1000
	for start := 0; start < n; start += batch {
		var paths []*api.Path
		for i := start; i < min(start+batch, n); i++ {
			prefix := fmt.Sprintf("2001:db8:%x:%x::", i>>16, i&0xffff)
			nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: prefix, PrefixLen: 64})
			if err != nil {
				return err
			}
			reach, err := anypb.New(&api.MpReachNLRIAttribute{Family: fam, NextHops: []string{"2001:db8::fe"}, Nlris: []*anypb.Any{nlri}})
			if err != nil {
				return err
			}
			paths = append(paths, &api.Path{Family: fam, Nlri: nlri, Pattrs: []*anypb.Any{origin, reach}})
		}
		if err := stream.Send(&api.AddPathStreamRequest{TableType: api.TableType_GLOBAL, Paths: paths}); err != nil {
			return fmt.Errorf("bgprouter: sending routes %d-%d: %w", start, start+len(paths)-1, err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return fmt.Errorf("bgprouter: closing the path stream: %w", err)
	}
	return nil
}

// DisableNeighbor closes the session with the speaker at neighbor and
// keeps it down (administratively) until EnableNeighbor.
func (r *Router) DisableNeighbor(neighbor string) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if _, err := r.proc.api.DisablePeer(ctx, &api.DisablePeerRequest{Address: neighbor}); err != nil {
		return fmt.Errorf("bgprouter: disabling the session with %s: %w", neighbor, err)
	}
	return nil
}

// EnableNeighbor lets the speaker at neighbor connect again.
func (r *Router) EnableNeighbor(neighbor string) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if _, err := r.proc.api.EnablePeer(ctx, &api.EnablePeerRequest{Address: neighbor}); err != nil {
		return fmt.Errorf("bgprouter: enabling the session with %s: %w", neighbor, err)
	}
	return nil
}
