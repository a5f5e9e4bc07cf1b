package health

import (
	"context"
	"math"
	"runtime/metrics"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// A checker starved of CPU cannot tell a slow node from its own slowness:
// its probes time out while the answers wait in its sockets, or while the
// process is not even running. Under CPU pressure (a replica's node busy
// with other pods, a CPU limit's throttling, the other replica's restart
// on the same machine) every node would then flap, and the routers would
// see its paths withdrawn and announced again by the thousand, on a
// replica that has nothing wrong but its own delay.
//
// So the checker watches its own process: how long goroutines waited to
// run once they could, as the Go runtime measures it
// (/sched/latencies:seconds), and how late its own periodic look comes,
// which also counts the time the kernel did not run the process at all. A
// probe that timed out while some wait reached a fifth of the timeout
// proves nothing about the node: it is not counted, and the node is probed
// again at once with a timeout starvedTimeoutFactor times as long. A probe
// with the long timeout counts whatever happens, so a dead node is still
// found while the process is starved, only later (see [Checker]).
const (
	// starvationLookEvery is how often the process's waits are read, so
	// that a wait is placed in time within this much.
	starvationLookEvery = 100 * time.Millisecond
	// starvationMemory is how far back the looks are kept: more than an
	// Interval plus the long timeout of any sane Config.
	starvationMemory = 30 * time.Second
	// starvedTimeoutFactor lengthens the timeout of the probes that follow
	// a starved one.
	starvedTimeoutFactor = 4
	// starvationLogEvery is the least time between two log lines about
	// the process being starved.
	starvationLogEvery = time.Minute
)

// starvedWait is the wait to run, of some goroutine or of the process,
// from which probes that time out with cfg's Timeout are not counted.
func (c Config) starvedWait() time.Duration { return c.Timeout / 5 }

// starvation records the longest wait to run of this process's goroutines,
// look by look. Its methods are safe for concurrent use.
type starvation struct {
	// read returns the cumulative histogram of the waits (nil if
	// there is none); a test sets another one.
	read func() *metrics.Float64Histogram

	mu sync.Mutex
	// prev are the histogram's counts at the last look.
	prev []uint64
	// looks, oldest first, none older than starvationMemory, hold the
	// looks that saw a wait: each the longest since the look before it.
	looks []starvedLook
	// logged is when the last log line about starvation was written.
	logged time.Time
}

// starvedLook is one look that saw a wait: when, and how long the wait
// was.
type starvedLook struct {
	at   time.Time
	wait time.Duration
}

// schedLatencies is the runtime's histogram of the time goroutines spent
// runnable before they ran.
const schedLatencies = "/sched/latencies:seconds"

func newStarvation() *starvation {
	samples := []metrics.Sample{{Name: schedLatencies}}
	return &starvation{read: func() *metrics.Float64Histogram {
		metrics.Read(samples)
		if samples[0].Value.Kind() != metrics.KindFloat64Histogram {
			return nil
		}
		return samples[0].Value.Float64Histogram()
	}}
}

// run looks every starvationLookEvery until ctx ends; a look that comes
// late counts its lateness as a wait. It logs, at most every
// starvationLogEvery, when a wait reaches threshold() (the current
// Config's starvedWait).
func (s *starvation) run(ctx context.Context, threshold func() time.Duration) {
	due := time.Now()
	s.look(due, 0)
	t := time.NewTimer(starvationLookEvery)
	defer t.Stop()
	for {
		due = due.Add(starvationLookEvery)
		t.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		wait := s.look(now, now.Sub(due))
		if limit := threshold(); limit > 0 && wait >= limit {
			s.logStarved(ctx, wait)
		}
		if now.Sub(due) > starvationLookEvery {
			due = now // a long stall: start over rather than catch up
		}
	}
}

// logStarved says, at most every starvationLogEvery, that the process is
// starved and what the checker does about it.
func (s *starvation) logStarved(ctx context.Context, wait time.Duration) {
	s.mu.Lock()
	now := time.Now()
	due := now.Sub(s.logged) >= starvationLogEvery
	if due {
		s.logged = now
	}
	s.mu.Unlock()
	if due {
		klog.FromContext(ctx).Info("Warning: this process is starved of CPU: health probes that time out meanwhile are not counted, and are repeated with a longer timeout",
			"wait", wait, "longerTimeoutFactor", starvedTimeoutFactor)
	}
}

// look reads the histogram and records the longest wait since the last
// look (late, the lateness of the caller, counts as one). It returns that
// wait.
func (s *starvation) look(now time.Time, late time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait := late
	if h := s.read(); h != nil {
		if len(s.prev) == len(h.Counts) {
			wait = max(wait, longestNew(h, s.prev))
		}
		s.prev = append(s.prev[:0], h.Counts...)
	}
	if wait > 0 {
		s.looks = append(s.looks, starvedLook{at: now, wait: wait})
	}
	for len(s.looks) > 0 && now.Sub(s.looks[0].at) > starvationMemory {
		s.looks = s.looks[1:]
	}
	return wait
}

// longestNew is the lower bound of the highest bucket of h whose count grew
// since prev: the longest wait recorded since then, to within a bucket.
func longestNew(h *metrics.Float64Histogram, prev []uint64) time.Duration {
	for i := len(h.Counts) - 1; i >= 0; i-- {
		if h.Counts[i] == prev[i] {
			continue
		}
		lower := h.Buckets[i]
		if math.IsInf(lower, 0) || lower <= 0 {
			return 0
		}
		return time.Duration(lower * float64(time.Second))
	}
	return 0
}

// worstSince is the longest wait recorded by the looks after t; with
// fresh, it looks first, so that a wait up to now counts.
func (s *starvation) worstSince(t time.Time, fresh bool) time.Duration {
	if fresh {
		s.look(time.Now(), 0)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var worst time.Duration
	for i := len(s.looks) - 1; i >= 0 && s.looks[i].at.After(t); i-- {
		worst = max(worst, s.looks[i].wait)
	}
	return worst
}
