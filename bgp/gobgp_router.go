package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v3/api"
	"k8s.io/klog/v2"
)

// gobgpRouter is the router seam's GoBGP adapter.
type gobgpRouter struct {
	srv *gobgpServer
	log logr.Logger

	// prefixLimitHits counts, per neighbor address, the sessions GoBGP
	// closed for exceeding the prefix limit; heldDown are the neighbors
	// it holds down for it now.
	mu              sync.Mutex
	prefixLimitHits map[netip.Addr]uint64
	heldDown        map[netip.Addr]bool
}

var _ router = (*gobgpRouter)(nil)

// startGoBGPRouter is the production newRouterFunc. The policies are set
// before anything else: until they exist GoBGP would accept routes from
// routers and send our paths to every router.
func startGoBGPRouter(ctx context.Context, g routerGlobal, onState func(peerEvent)) (router, error) {
	log := klog.FromContext(ctx)
	r := &gobgpRouter{log: log, prefixLimitHits: map[netip.Addr]uint64{}, heldDown: map[netip.Addr]bool{}}
	global := &api.Global{Asn: g.ASN, RouterId: g.RouterID.String(), ListenPort: -1} // -1: never listen
	if g.ListenPort > 0 {
		global.ListenPort = g.ListenPort
		for _, a := range g.ListenAddresses {
			global.ListenAddresses = append(global.ListenAddresses, a.String())
		}
	}
	apiAddr := ""
	if g.APIAddress.IsValid() {
		apiAddr = g.APIAddress.String()
	}
	onEvent := func(ev *api.WatchEventResponse) {
		p := ev.GetPeer()
		if p == nil || p.Type != api.WatchEventResponse_PeerEvent_STATE || p.Peer == nil || p.Peer.State == nil {
			return
		}
		if a, err := netip.ParseAddr(p.Peer.State.NeighborAddress); err == nil {
			r.noteAdminState(a, p.Peer.State.AdminState)
			onState(peerEvent{addr: a, state: sessionState(p.Peer.State.SessionState)})
		}
	}
	srv, err := startGoBGP(ctx, log, global, apiAddr, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, onEvent)
	if err != nil {
		return nil, err
	}
	r.srv = srv
	if err := srv.bgp.SetPolicies(ctx, policies(&routingPolicy{ASN: g.ASN})); err != nil {
		srv.stop(log)
		return nil, fmt.Errorf("setting the BGP policies: %w", err)
	}
	if err := assignPolicies(ctx, srv.bgp); err != nil {
		srv.stop(log)
		return nil, err
	}
	return r, nil
}

// noteAdminState counts the sessions GoBGP closes for exceeding the
// prefix limit: it then holds the neighbor down with the administrative
// state PFX_CT, which every later state event carries, until the neighbor
// is configured anew.
func (r *gobgpRouter) noteAdminState(a netip.Addr, s api.PeerState_AdminState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	down := s == api.PeerState_PFX_CT
	if down && !r.heldDown[a] {
		r.prefixLimitHits[a]++
		r.log.Info("Warning: router sent more prefixes than its limit (maxPrefixes); session closed and held down until the peer is configured anew",
			"address", a, "times", r.prefixLimitHits[a])
	}
	r.heldDown[a] = down
}

func (r *gobgpRouter) addPeer(ctx context.Context, n neighbor) error {
	return r.srv.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(&n)})
}

func (r *gobgpRouter) deletePeer(ctx context.Context, addr netip.Addr) error {
	if err := r.srv.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.heldDown, addr)
	r.mu.Unlock()
	return nil
}

func (r *gobgpRouter) listPeers(ctx context.Context) ([]peerState, error) {
	var out []peerState
	err := r.srv.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if st, ok := decodePeer(p); ok {
			out = append(out, st)
		}
	})
	r.mu.Lock()
	for i := range out {
		out[i].PrefixLimitExceeded = r.prefixLimitHits[out[i].Address]
	}
	r.mu.Unlock()
	return out, err
}

func (r *gobgpRouter) setPolicy(ctx context.Context, p routingPolicy) error {
	return r.srv.bgp.SetPolicies(ctx, policies(&p))
}

func (r *gobgpRouter) addPath(ctx context.Context, p routePath) error {
	_, err := r.srv.bgp.AddPath(ctx, &api.AddPathRequest{Path: apiPath(&p)})
	return err
}

func (r *gobgpRouter) deletePath(ctx context.Context, p routePath) error {
	return r.srv.bgp.DeletePath(ctx, &api.DeletePathRequest{Path: withdrawPath(&p)})
}

func (r *gobgpRouter) stop() { r.srv.stop(r.log) }
