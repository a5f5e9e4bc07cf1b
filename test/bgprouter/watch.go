package bgprouter

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// Watch follows the paths one neighbor sends while the test runs, from the
// router's own event stream: a withdrawal followed at once by a new
// announcement is counted, which a poll of the table would miss, and the
// time of the last change is exact, where a poll's is as coarse as the
// listing is long.
type Watch struct {
	withdrawals atomic.Int64
	// last is when the last path event arrived, in Unix nanoseconds.
	last atomic.Int64
	// err is the stream's error if it ended before the test did.
	err atomic.Value
}

// Withdrawals is how many withdrawals were seen so far.
func (w *Watch) Withdrawals() int64 { return w.withdrawals.Load() }

// Last is when the last path (announced or withdrawn) arrived; zero if
// none has.
func (w *Watch) Last() time.Time {
	if n := w.last.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Err is why the event stream ended early, or nil while it runs.
func (w *Watch) Err() error {
	if err, ok := w.err.Load().(error); ok {
		return err
	}
	return nil
}

// WatchNeighbor follows the paths neighbor sends (Adj-RIB-In) from now
// until the test ends. A session going down while it runs is not a
// withdrawal of this kind: the router drops the neighbor's paths without
// an UPDATE; check the session separately.
func (r *Router) WatchNeighbor(t testing.TB, neighbor string) *Watch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := r.proc.api.WatchEvent(ctx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_ADJIN, PeerAddress: neighbor}},
	}})
	if err != nil {
		cancel()
		t.Fatalf("bgprouter: watching %s's paths: %v", neighbor, err)
	}
	w := &Watch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil {
					w.err.Store(fmt.Errorf("bgprouter: the event stream of %s ended: %w", neighbor, err))
				}
				return
			}
			now := time.Now().UnixNano()
			for _, p := range resp.GetTable().GetPaths() {
				if p.GetNeighborIp() != neighbor {
					continue
				}
				w.last.Store(now)
				if p.GetIsWithdraw() {
					w.withdrawals.Add(1)
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}
