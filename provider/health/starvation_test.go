package health

import (
	"context"
	"math"
	"net/http"
	"net/netip"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLongestNew(t *testing.T) {
	buckets := []float64{math.Inf(-1), 0.001, 0.1, 1, math.Inf(1)}
	for _, tc := range []struct {
		name        string
		prev, count []uint64
		want        time.Duration
	}{
		{name: "nothing new", prev: []uint64{5, 5, 5, 5}, count: []uint64{5, 5, 5, 5}, want: 0},
		{name: "short waits only", prev: []uint64{5, 5, 0, 0}, count: []uint64{9, 7, 0, 0}, want: time.Millisecond},
		{name: "the highest grown bucket wins", prev: []uint64{5, 5, 0, 0}, count: []uint64{9, 7, 1, 0}, want: 100 * time.Millisecond},
		{name: "open-ended top bucket", prev: []uint64{0, 0, 0, 0}, count: []uint64{0, 0, 0, 2}, want: time.Second},
		{name: "the bucket from -Inf says nothing", prev: []uint64{0, 0, 0, 0}, count: []uint64{3, 0, 0, 0}, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := longestNew(&metrics.Float64Histogram{Counts: tc.count, Buckets: buckets}, tc.prev)
			if got != tc.want {
				t.Errorf("longestNew = %s, want %s", got, tc.want)
			}
		})
	}
}

// scriptedWaits is a histogram of waits that grows by what the test says
// before each read.
type scriptedWaits struct {
	mu     sync.Mutex
	counts []uint64
}

// waitBuckets: under 1 ms, 1 ms–1 s, 1 s and more.
var waitBuckets = []float64{0, 0.001, 1, math.Inf(1)}

func (w *scriptedWaits) add(bucket int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.counts[bucket]++
}

func (w *scriptedWaits) read() *metrics.Float64Histogram {
	w.mu.Lock()
	defer w.mu.Unlock()
	return &metrics.Float64Histogram{Counts: append([]uint64(nil), w.counts...), Buckets: waitBuckets}
}

func TestStarvationWorstSince(t *testing.T) {
	w := &scriptedWaits{counts: make([]uint64, 3)}
	s := &starvation{read: w.read}
	t0 := time.Now()
	s.look(t0, 0) // the first look only learns the counts
	w.add(2)
	s.look(t0.Add(time.Second), 0) // a wait of 1 s or more
	w.add(1)
	s.look(t0.Add(2*time.Second), 0) // a wait of 1 ms or more
	s.look(t0.Add(3*time.Second), 50*time.Millisecond)
	s.look(t0.Add(4*time.Second), 0) // nothing new
	for _, tc := range []struct {
		since time.Time
		want  time.Duration
	}{
		{since: t0, want: time.Second},
		{since: t0.Add(time.Second), want: 50 * time.Millisecond},
		{since: t0.Add(2500 * time.Millisecond), want: 50 * time.Millisecond},
		{since: t0.Add(3 * time.Second), want: 0},
	} {
		if got := s.worstSince(tc.since, false); got != tc.want {
			t.Errorf("worstSince(t0+%s) = %s, want %s", tc.since.Sub(t0), got, tc.want)
		}
	}
	// Looks older than starvationMemory are forgotten.
	s.look(t0.Add(starvationMemory+1500*time.Millisecond), 0)
	if got := s.worstSince(t0, false); got != 50*time.Millisecond {
		t.Errorf("after starvationMemory, worstSince(t0) = %s, want the 50ms of the look at t0+3s", got)
	}
}

// TestStarvationSeesQueuedGoroutines: with far more goroutines that want a
// CPU than the process has, the runtime's own measure of their waits is
// seen as starvation.
func TestStarvationSeesQueuedGoroutines(t *testing.T) {
	s := newStarvation()
	start := time.Now()
	s.look(start, 0)
	if s.read() == nil {
		t.Fatalf("the runtime has no %s histogram", schedLatencies)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var spins atomic.Int64
	for range 64 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for ctx.Err() == nil {
				spins.Add(1)
			}
		})
	}
	wg.Wait()
	// Each spinner ran for a time slice in turn, and waited for the
	// others meanwhile: far more than 10 ms.
	if got := s.worstSince(start, true); got < 10*time.Millisecond {
		t.Errorf("after 1s of %d spinning goroutines on %d CPUs, the longest wait seen is %s, want ≥ 10ms", 64*runtime.GOMAXPROCS(0), runtime.GOMAXPROCS(0), got)
	}
}

// TestStarvedProbes: a probe that times out while the checker's process
// is starved is not counted against the node; the next ones get a longer
// timeout. A node slow only because of the checker stays healthy, and a
// dead node is still found.
func TestStarvedProbes(t *testing.T) {
	cfg := testConfig(time.Second, 2, 2)
	slow := func(int64) int { time.Sleep(2 * cfg.Timeout); return http.StatusOK }
	for _, tc := range []struct {
		name    string
		starved bool
		answer  func(int64) int
		// probes is how many requests the test waits for before it
		// checks.
		probes      int64
		wantHealthy bool
	}{
		{name: "slow node, not starved: unhealthy", answer: slow, probes: 4, wantHealthy: false},
		{name: "slow node, starved: healthy", starved: true, answer: slow, probes: 4, wantHealthy: true},
		{name: "dead node, starved: unhealthy", starved: true, answer: always(hang), probes: 4, wantHealthy: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, tc.answer)
			rec := &recorder{node: "a"}
			c := NewChecker(cfg, rec.onChange)
			rec.c = c
			c.starved = notStarved{}
			if tc.starved {
				waits := &scriptedWaits{counts: make([]uint64, 3)}
				c.starved = &starvation{read: func() *metrics.Float64Histogram {
					waits.add(2) // a goroutine waited a second or more
					return waits.read()
				}}
			}
			c.SetTargets(map[string]netip.AddrPort{"a": s.addr})
			runUntilStopped(t, c)
			if tc.wantHealthy {
				waitRequests(t, s, tc.probes)
			} else {
				waitFor(t, "a to turn unhealthy", func() bool { return !c.Healthy("a") })
			}
			if got := c.Healthy("a"); got != tc.wantHealthy {
				t.Errorf("Healthy(a) = %v, want %v", got, tc.wantHealthy)
			}
			// Starved from the start, the checker may give even the first
			// probe the long timeout: then none is discounted.
			if got := c.StarvedProbes(); !tc.starved && got != 0 {
				t.Errorf("StarvedProbes() = %d, want 0: the process was not starved", got)
			}
		})
	}
}
