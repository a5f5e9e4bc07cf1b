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
	// closed for exceeding the prefix limit.
	mu              sync.Mutex
	prefixLimitHits map[netip.Addr]uint64
}

var _ router = (*gobgpRouter)(nil)

// startGoBGPRouter is the production newRouterFunc. The policies are set
// before anything else: until they exist GoBGP would accept routes from
// routers and send our paths to every router.
func startGoBGPRouter(ctx context.Context, g routerGlobal, onState func(peerEvent)) (router, error) {
	log := klog.FromContext(ctx)
	r := &gobgpRouter{log: log, prefixLimitHits: map[netip.Addr]uint64{}}
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
			onState(peerEvent{addr: a, state: sessionState(p.Peer.State.SessionState)})
		}
	}
	srv, err := startGoBGPWith(ctx, log, global, apiAddr, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, onEvent, r.prefixLimitExceeded)
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

// prefixLimitExceeded is called by the logger when GoBGP closes a session
// for exceeding its prefix limit. It runs on GoBGP's server loop.
func (r *gobgpRouter) prefixLimitExceeded(addr string) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return
	}
	r.mu.Lock()
	r.prefixLimitHits[a]++
	n := r.prefixLimitHits[a]
	r.mu.Unlock()
	r.log.Info("Warning: router sent more prefixes than its limit (maxPrefixes); session closed", "address", a, "times", n)
}

func (r *gobgpRouter) addPeer(ctx context.Context, n neighbor) error {
	return r.srv.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(&n)})
}

func (r *gobgpRouter) deletePeer(ctx context.Context, addr netip.Addr) error {
	return r.srv.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()})
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
