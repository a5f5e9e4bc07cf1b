package bgp

import (
	"context"
	"sync"

	api "github.com/osrg/gobgp/v3/api"
)

// gate makes GoBGP's package globals safe with several servers in one
// process: the speaker and its replacement during a restart, and in tests
// the routers beside the speaker.
//
// StartBgp writes the package globals table.SelectionOptions and
// table.UseMultiplePaths (gobgp/v3 internal/pkg/table/destination.go), and
// NewBgpServer grpc.EnableTracing, on every start. Every running server
// loop reads the first two whenever it selects a best path, which it does
// for paths that arrive from the network: no lock of ours is on that
// path, so holding a mutex around StartBgp alone would order nothing.
// Instead, a server's start-up runs while every other server loop is
// parked between two events, in GoBGP's timing hook (which the loop
// calls after every event it handled): the loops' earlier reads
// happen-before the writes, their later reads after them.
//
// A loop "holds" the gate from its server's start until it parks or
// leaves. start parks every holder: it wakes each one with a cheap
// management operation, after which the loop calls the hook and waits
// there until the start is over.
type gate struct {
	mu       sync.Mutex
	cond     *sync.Cond
	starting bool
	holders  map[*gobgpServer]bool
}

var startGate = newGate()

func newGate() *gate {
	g := &gate{holders: map[*gobgpServer]bool{}}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// start runs f, which starts srv's GoBGP, while every other server loop is
// parked; afterwards srv's loop holds the gate.
func (gt *gate) start(srv *gobgpServer, f func()) {
	gt.mu.Lock()
	for gt.starting {
		gt.cond.Wait()
	}
	gt.starting = true
	for h := range gt.holders {
		// The operation is answered before the loop calls the hook, so
		// the goroutine ends even while the loop is parked.
		go h.wake()
	}
	for len(gt.holders) > 0 {
		gt.cond.Wait()
	}
	gt.mu.Unlock()

	f()

	gt.mu.Lock()
	gt.holders[srv] = true
	srv.holding, srv.joined = true, true
	gt.starting = false
	gt.cond.Broadcast()
	gt.mu.Unlock()
}

// between is called on srv's loop after every event: the loop releases
// the gate, waits while a start is under way, and takes it again unless
// it is leaving.
func (gt *gate) between(srv *gobgpServer) {
	gt.mu.Lock()
	defer gt.mu.Unlock()
	if !srv.holding {
		return // not started yet, or left
	}
	delete(gt.holders, srv)
	srv.holding = false
	gt.cond.Broadcast()
	for gt.starting {
		gt.cond.Wait()
	}
	if srv.leaving {
		close(srv.left)
		return
	}
	gt.holders[srv] = true
	srv.holding = true
}

// leave takes srv's loop out of the gate for good and returns once it is
// out. srv is stopped: nothing but our wake-up reaches its loop any more.
func (gt *gate) leave(srv *gobgpServer) {
	gt.mu.Lock()
	if !srv.joined {
		gt.mu.Unlock()
		return // its start never finished: it never held the gate
	}
	srv.leaving = true
	gt.mu.Unlock()
	srv.wake() // the loop calls the hook after it
	<-srv.left
}

// wake sends srv's loop a management operation that changes nothing.
func (srv *gobgpServer) wake() {
	_, _ = srv.bgp.GetBgp(context.Background(), &api.GetBgpRequest{})
}
