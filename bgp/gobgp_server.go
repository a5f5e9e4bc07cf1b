package bgp

// The gobgp_*.go files are the only ones that speak GoBGP: this one holds
// the server's life cycle, gobgp_router.go the router seam's adapter, the
// others the conversions of our types to GoBGP's. No GoBGP type leaves
// them.

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// teardownTimeout bounds how long stop waits for the sessions to go down
// before it stops GoBGP anyway. They go down within milliseconds; the
// bound only keeps a wedged session from hanging Stop.
const teardownTimeout = 30 * time.Second

// gobgpServer is one embedded GoBGP instance.
//
// GoBGP v3's (*BgpServer).Serve never returns: Stop closes the sessions,
// the listeners and the gRPC API, but leaves the server loop blocked in
// its select forever, and GoBGP offers no way to end it. Ending it from
// the inside (runtime.Goexit in the timing hook) would need to know which
// management operation is the last one, and GoBGP's event watcher sends
// its own unregistration asynchronously after its context ends: no
// callback tells us when it has been answered, so a loop ended too early
// would leave the watcher's goroutine blocked instead. So one goroutine
// per stopped server stays, parked in Serve's select, holding an empty
// server (stop deletes every path first): a few kilobytes per GoBGP
// restart, which happens only when the global settings change.
// parkedServeLoops counts them so that tests tolerate exactly those.
type gobgpServer struct {
	bgp *server.BgpServer
	// watchCancel ends the event watcher.
	watchCancel context.CancelFunc
	onEvent     func(*api.WatchEventResponse)
	// changed is signalled on every session state change, so that stop
	// can wait for the sessions' teardown without polling.
	changed chan struct{}

	// Loop-side state of the start gate (see startGate), guarded by
	// startGate.mu.
	joined  bool          // its start has finished
	holding bool          // the loop may read GoBGP's package globals
	leaving bool          // stop asked the loop to leave the gate
	left    chan struct{} // closed when the loop has left the gate
}

var _ server.FSMTimingHook = (*gobgpServer)(nil)

// parkedServeLoops counts the server loops that stop left parked (see
// gobgpServer).
var parkedServeLoops atomic.Int64

// Observe implements server.FSMTimingHook. GoBGP calls it on the server
// loop after every event the loop has handled.
func (g *gobgpServer) Observe(server.FSMOperation, time.Duration, time.Duration) {
	startGate.between(g)
}

// startGoBGP starts a GoBGP server with the given global configuration.
// onEvent, if not nil, is called on GoBGP's watcher goroutine for every
// event watch selects (peer state changes always); it must not block.
func startGoBGP(ctx context.Context, logger logr.Logger, global *api.Global, apiAddress string, watch *api.WatchEventRequest, onEvent func(*api.WatchEventResponse)) (*gobgpServer, error) {
	g := &gobgpServer{
		onEvent: onEvent,
		changed: make(chan struct{}, 1),
		left:    make(chan struct{}),
	}
	opts := []server.ServerOption{
		server.LoggerOption(&logAdapter{l: logger.WithName("gobgp")}),
		server.TimingHookOption(g),
	}
	if apiAddress != "" {
		opts = append(opts, server.GrpcListenAddress(apiAddress))
	}
	if watch == nil {
		watch = &api.WatchEventRequest{}
	}
	if watch.Peer == nil {
		watch.Peer = &api.WatchEventRequest_Peer{}
	}
	// The watcher lives until stop cancels it, whatever happens to the
	// caller's context.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.watchCancel = cancel
	var err error
	startGate.start(g, func() {
		// NewBgpServer sets grpc.EnableTracing, StartBgp GoBGP's route
		// selection options: package globals (see startGate).
		g.bgp = server.NewBgpServer(opts...)
		go g.bgp.Serve()
		err = g.bgp.WatchEvent(wctx, watch, g.handle)
		if err == nil {
			err = g.bgp.StartBgp(ctx, &api.StartBgpRequest{Global: global})
		}
	})
	if err != nil {
		g.stop(logger)
		return nil, fmt.Errorf("starting GoBGP: %w", err)
	}
	return g, nil
}

func (g *gobgpServer) handle(ev *api.WatchEventResponse) {
	if p := ev.GetPeer(); p != nil && p.Type == api.WatchEventResponse_PeerEvent_STATE {
		select {
		case g.changed <- struct{}{}:
		default:
		}
	}
	if g.onEvent != nil {
		g.onEvent(ev)
	}
}

// notIdle lists the peers whose session is not Idle, as GoBGP's server
// loop sees them.
func (g *gobgpServer) notIdle(ctx context.Context) []string {
	var busy []string
	_ = g.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.Conf != nil && p.State != nil && p.State.SessionState != api.PeerState_IDLE {
			busy = append(busy, p.Conf.NeighborAddress)
		}
	})
	return busy
}

// stop closes every session, stops GoBGP and its watcher, and leaves the
// server loop parked (see gobgpServer). The caller guarantees that nothing
// else calls into the server any more: its own goroutines have ended and
// it holds the locks that API calls take.
func (g *gobgpServer) stop(logger logr.Logger) {
	ctx := context.Background()
	// Shut the sessions down first (administratively: the peers stay
	// configured) and wait until GoBGP's loop sees every one Idle: a
	// session that is not Idle reads the global configuration, which
	// StopBgp resets without waiting for the sessions' goroutines (a data
	// race in GoBGP v3). Every state change wakes the wait.
	var peers []string
	_ = g.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.Conf != nil {
			peers = append(peers, p.Conf.NeighborAddress)
		}
	})
	for _, a := range peers {
		if err := g.bgp.DisablePeer(ctx, &api.DisablePeerRequest{Address: a, Communication: "shutting down"}); err != nil {
			logger.Error(err, "Shutting down a BGP session", "address", a)
		}
	}
	timeout := time.NewTimer(teardownTimeout)
	defer timeout.Stop()
wait:
	for busy := g.notIdle(ctx); len(busy) > 0; busy = g.notIdle(ctx) {
		select {
		case <-g.changed:
		case <-timeout.C:
			logger.Error(nil, "BGP sessions not torn down in time; stopping GoBGP anyway", "waited", teardownTimeout, "peers", busy)
			break wait
		}
	}
	// The parked loop keeps the server: empty it first.
	if g.bgp != nil {
		if err := g.bgp.DeletePath(ctx, &api.DeletePathRequest{}); err != nil {
			logger.V(2).Info("Deleting the local paths before stopping GoBGP", "err", err)
		}
	}
	// StopBgp removes the peers, waits for their goroutines and closes
	// the listeners; Stop also stops the gRPC API, so that no operator
	// request can slip in below.
	g.bgp.Stop()
	// The watcher's goroutine unregisters itself with a management
	// operation, which the loop answers, and ends.
	g.watchCancel()
	startGate.leave(g)
	parkedServeLoops.Add(1)
}
