// Package health is the node health check, the counterpart of a cloud load
// balancer's health probe: every CCM replica probes kube-proxy's healthz on
// every node (http://<node address>:10256/healthz by default), and the
// announcer withdraws the BGP paths via the nodes that fail.
//
// A node's state changes only after several answers in a row agree
// (UnhealthyThreshold failures, HealthyThreshold successes), so one lost
// probe withdraws nothing. A node the checker has just learnt of is healthy
// until proven otherwise: a restarted CCM must not withdraw a working node
// while it has not probed it yet. Each node is probed by its own goroutine,
// so a node that hangs never delays the verdict on another.
//
// A node in doubt (its last answer contradicted its state, or a probe of a
// healthy node is slow) is probed every Timeout/2 instead of every
// Interval, like HAProxy's fastinter. Its probes may then overlap (two at
// most); their answers count in the order the probes started, so a late
// timeout never joins failures that were not in a row. With the defaults
// (every 1s, timeout 500ms, thresholds of 2), a node that dies is found
// unhealthy at most Interval + Timeout + (UnhealthyThreshold-1) × Timeout/2
// = 1.75 s later (1.25 s when its port refuses connections or it answers
// 503).
//
// A probe that times out while this process was starved of CPU is not
// counted: the node is probed again at once, with a timeout four times as
// long, which counts whatever happens (see starvation.go). While the
// process is starved, a node that stops answering is then found within
// Interval + Timeout + UnhealthyThreshold × 4 × Timeout (5.5 s with the
// defaults) rather than 1.75 s, and a node that answers slowly only
// because this process is slow stays healthy.
//
// A node's probes share one kept-alive HTTP connection, for at most
// [freshEvery] probes: every fifth probe, and every probe after a failure,
// opens a new one, so that a node that accepts no new connection while an
// old one still answers is found unhealthy too, within freshEvery ×
// Interval + Timeout + (UnhealthyThreshold-1) × Timeout/2 = 5.75 s with
// the defaults (see [endpoint.probe]).
package health

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
)

// Checker probes a set of nodes and keeps each one's health state. Its
// methods are safe for concurrent use.
type Checker struct {
	onChange func()
	// notify holds a pending onChange call: flips that happen while one is
	// pending are folded into it.
	notify chan struct{}

	// starved watches this process's own delays, so that a probe that
	// timed out because of them is not held against the node.
	starved selfWatch
	// starvedProbes counts the probes so discounted.
	starvedProbes atomic.Int64

	mu      sync.RWMutex
	cfg     Config
	targets map[string]*target // node name -> its address and state
	run     *runState          // nil unless Run is running
}

// selfWatch is what the checker needs to know of its own process's
// delays (see starvation).
type selfWatch interface {
	// run watches until ctx ends; threshold is the current
	// Config's starvedWait.
	run(ctx context.Context, threshold func() time.Duration)
	// worstSince is the longest wait to run seen after t; with fresh,
	// up to now.
	worstSince(t time.Time, fresh bool) time.Duration
}

// runState is what one Run owns: the context of its probers and the
// means to wait for them.
type runState struct {
	ctx context.Context
	wg  sync.WaitGroup
}

// target is one node's address and health state, guarded by Checker.mu.
type target struct {
	addr    netip.AddrPort
	healthy bool
	// streak counts the probes in a row that contradict healthy: failures
	// of a healthy node, successes of an unhealthy one.
	streak int
	// lastErr is the error of the last failed probe.
	lastErr error
	// gen identifies the prober whose results count; it changes whenever
	// the prober is stopped, so that a late result of an old prober (of an
	// old address or config) is dropped.
	gen  uint64
	stop context.CancelFunc // stops the current prober; nil when none runs
}

// NewChecker returns a checker with cfg (from [ConfigFile.Parse]) and no
// targets. Nothing is probed before [Checker.Run].
//
// onChange, which may be nil, is called whenever the answer of
// [Checker.Healthy] changes for some node: a node turns unhealthy or healthy
// again, an unhealthy node is removed from the targets, or the checks are
// turned off while a node is unhealthy. It is called on the goroutine of
// Run, never concurrently with itself, and calls are coalesced: flips that
// happen while one is pending or in progress give one more call, not one
// each. It should return quickly (trigger a sync, do not perform it):
// probes go on while it runs, but later notifications, and Run's return
// when ctx ends, wait for it. It may call the Checker's methods.
func NewChecker(cfg Config, onChange func()) *Checker {
	return &Checker{
		onChange: onChange,
		notify:   make(chan struct{}, 1),
		cfg:      cfg.withDefaults(),
		targets:  map[string]*target{},
		starved:  newStarvation(),
	}
}

// Run probes the targets until ctx ends, and calls onChange. It blocks, and
// when it returns, every goroutine it started has ended. Run may be called
// again after it returned, but not while it runs.
func (c *Checker) Run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &runState{ctx: ctx}

	c.mu.Lock()
	if c.run != nil {
		c.mu.Unlock()
		panic("health: Checker.Run called while it is running")
	}
	c.run = r
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		c.starved.run(ctx, c.starvedWait)
	}()
	for name, t := range c.targets {
		c.startProber(name, t)
	}
	c.mu.Unlock()

	for {
		select {
		case <-ctx.Done():
			c.mu.Lock()
			for _, t := range c.targets {
				c.stopProber(t)
			}
			c.run = nil
			c.mu.Unlock()
			r.wg.Wait() // the probers have closed their connections
			return
		case <-c.notify:
			if c.onChange != nil {
				c.onChange()
			}
		}
	}
}

// SetTargets sets the nodes to probe: node name -> the address and port of
// its healthz, which the caller builds from the node's address and the
// Config's Port. So when a new Config changes Port, the caller must call
// SetTargets again with the new port; the Checker keeps the node's state
// across the change.
//
// A new node starts healthy and turns unhealthy only after
// UnhealthyThreshold failed probes; a node no longer listed stops being
// probed and is forgotten; a node whose address changed keeps its state
// (the count towards a flip starts over) and is probed at the new address.
// An invalid address fails every probe. targets is not retained.
func (c *Checker) SetTargets(targets map[string]netip.AddrPort) {
	c.mu.Lock()
	changed := false
	for name, t := range c.targets {
		if _, ok := targets[name]; !ok {
			c.stopProber(t)
			delete(c.targets, name)
			changed = changed || !t.healthy
		}
	}
	for name, addr := range targets {
		t, ok := c.targets[name]
		if ok && t.addr == addr {
			continue
		}
		if ok {
			c.stopProber(t)
			t.streak = 0
		} else {
			t = &target{healthy: true}
			c.targets[name] = t
		}
		t.addr = addr
		c.startProber(name, t)
	}
	c.mu.Unlock()
	if changed {
		c.changed()
	}
}

// SetConfig applies a new configuration to a running Checker without losing
// the nodes' states: probes restart with the new interval, timeout and
// path, and the new thresholds apply from the next probe (a node that has
// already failed as often as a lowered threshold flips on its next failure).
// Turning the checks off makes every node healthy and stops probing;
// turning them back on starts from healthy. Port is the caller's business
// (see [Checker.SetTargets]). An unchanged cfg changes nothing.
func (c *Checker) SetConfig(cfg Config) {
	cfg = cfg.withDefaults()
	c.mu.Lock()
	if cfg == c.cfg {
		c.mu.Unlock()
		return
	}
	c.cfg = cfg
	changed := false
	for name, t := range c.targets {
		c.stopProber(t)
		if !cfg.Enabled {
			changed = changed || !t.healthy
			t.healthy, t.streak, t.lastErr = true, 0, nil
		}
		c.startProber(name, t)
	}
	c.mu.Unlock()
	if changed {
		c.changed()
	}
}

// Healthy tells whether node passes its health check. A node that is not a
// target, or any node when the checks are off, is healthy.
func (c *Checker) Healthy(node string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok := c.targets[node]
	return !c.cfg.Enabled || !ok || t.healthy
}

// States returns every target's state, node name -> healthy, for metrics.
// With the checks off, every target is healthy.
func (c *Checker) States() map[string]bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	states := make(map[string]bool, len(c.targets))
	for name, t := range c.targets {
		states[name] = !c.cfg.Enabled || t.healthy
	}
	return states
}

// StarvedProbes is how many probes timed out while this process was
// starved of CPU, and were not counted (see starvation.go).
func (c *Checker) StarvedProbes() int64 { return c.starvedProbes.Load() }

// starvedWait is the current Config's [Config.starvedWait].
func (c *Checker) starvedWait() time.Duration {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cfg.starvedWait()
}

// changed asks Run to call onChange, once for any number of flips.
func (c *Checker) changed() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// prober is what one probing goroutine knows; it never changes: a new
// address or config means a new prober.
type prober struct {
	name string
	t    *target
	gen  uint64
	addr netip.AddrPort
	cfg  Config
	// healthy is the node's state when the prober started.
	healthy bool
}

// startProber starts probing t, if Run is running and the checks are on.
// c.mu must be held.
func (c *Checker) startProber(name string, t *target) {
	if c.run == nil || !c.cfg.Enabled {
		return
	}
	ctx, cancel := context.WithCancel(c.run.ctx)
	t.stop = cancel
	p := prober{name: name, t: t, gen: t.gen, addr: t.addr, cfg: c.cfg, healthy: t.healthy}
	r := c.run
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		c.probeLoop(ctx, p)
	}()
}

// stopProber stops t's prober, if any, and makes any result it has yet to
// report stale. c.mu must be held.
func (c *Checker) stopProber(t *target) {
	if t.stop != nil {
		t.stop()
		t.stop = nil
	}
	t.gen++
}

// probeLoop probes p.addr until ctx ends: every p.cfg.Interval while the
// node's state is settled, every fast interval (Timeout/2, see
// [Config.fastInterval]) while it is in doubt. A node is in doubt when its
// last answer contradicted its state (a failure of a healthy node, a
// success of an unhealthy one), and a healthy node also while a probe of it
// has gone unanswered for the fast interval: the next probe then starts
// before the slow one times out. This is HAProxy's fastinter: a dying node
// is confirmed within Interval + Timeout + (UnhealthyThreshold-1) × fast
// (1.75 s with the defaults) instead of waiting a whole Interval per
// failure, while a settled node, dead or alive, costs one probe per
// Interval. The first probe comes after a random part of the interval, so
// that the probes of many nodes (all started at once by Run or SetConfig)
// spread over it.
func (c *Checker) probeLoop(ctx context.Context, p prober) {
	type result struct {
		probe probeRun
		err   error
	}
	results := make(chan result)
	ep := newEndpoint(p.addr, p.cfg)
	defer ep.close() // after the probes' end: none keeps a connection after it
	var probes sync.WaitGroup
	defer probes.Wait() // after the context's end, which cuts them short
	fast := p.cfg.fastInterval()
	healthy, doubt := p.healthy, false
	// running holds the probes under way; counted is the start of the
	// newest probe whose answer was counted.
	var running []probeRun
	var lastStart, counted time.Time
	// wait is the time from one probe's start to the next one's.
	wait := func() time.Duration {
		if doubt || (healthy && len(running) > 0) {
			return fast
		}
		return p.cfg.Interval
	}

	timer := time.NewTimer(rand.N(p.cfg.Interval))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			if left := wait() - time.Since(lastStart); !lastStart.IsZero() && left > 0 {
				timer.Reset(left) // the state settled since the timer was set
				continue
			}
			if len(running) >= maxRunning || slices.ContainsFunc(running, probeRun.timedOut) {
				// Enough probes are under way, or one has timed out and
				// its failure is on its way: count it first, it may
				// settle the state. An answer sets the timer again.
				continue
			}
			run := c.newProbeRun(p.cfg)
			lastStart = run.start
			running = append(running, run)
			probes.Add(1)
			go func() {
				defer probes.Done()
				err := ep.probe(ctx, run.timeout)
				select {
				case results <- result{run, err}:
				case <-ctx.Done():
				}
			}()
			timer.Reset(wait())
		case r := <-results:
			running = slices.DeleteFunc(running, func(x probeRun) bool { return x.start.Equal(r.probe.start) })
			if ctx.Err() != nil {
				return // stopped: the probe was cut short, it proves nothing
			}
			// Answers count in the order their probes started: the
			// timeout of an old probe that comes after a newer probe's
			// answer is stale, and counting it would make failures that
			// were not in a row look as if they were.
			if r.probe.start.After(counted) {
				counted = r.probe.start
				if c.starvedTimeout(ctx, p, r.probe, r.err) {
					doubt = true // probed again at the fast interval, with the long timeout
				} else {
					healthy, doubt = c.record(ctx, p, r.err)
				}
			}
			timer.Reset(wait() - time.Since(lastStart))
		}
	}
}

// probeRun is one probe: when it started and how long it may take.
type probeRun struct {
	start   time.Time
	timeout time.Duration
}

func (r probeRun) timedOut() bool { return time.Since(r.start) >= r.timeout }

// newProbeRun starts a probe now, with cfg's Timeout, or starvedTimeoutFactor
// times as long if this process was starved within the last Interval: a
// probe that follows a discounted one (see starvedTimeout) counts whatever
// happens.
func (c *Checker) newProbeRun(cfg Config) probeRun {
	now := time.Now()
	r := probeRun{start: now, timeout: cfg.Timeout}
	if c.starved.worstSince(now.Add(-cfg.Interval), false) >= cfg.starvedWait() {
		r.timeout *= starvedTimeoutFactor
	}
	return r
}

// starvedTimeout tells whether err, the result of probe r, is a timeout
// with the short timeout while this process was starved of CPU: such a
// result proves nothing about the node, and is not counted.
func (c *Checker) starvedTimeout(ctx context.Context, p prober, r probeRun, err error) bool {
	if r.timeout != p.cfg.Timeout || !errors.Is(err, errNoAnswer) {
		return false
	}
	wait := c.starved.worstSince(r.start, true)
	if wait < p.cfg.starvedWait() {
		return false
	}
	c.starvedProbes.Add(1)
	klog.FromContext(ctx).V(4).Info("Health probe timed out while this process was starved of CPU: not counted, probing again with a longer timeout",
		"node", klog.KRef("", p.name), "address", p.addr, "wait", wait, "err", err)
	return true
}

// maxRunning is how many probes of one node may be under way at once: a
// slow one and the fast re-probe that overlaps it (see probeLoop).
const maxRunning = 2

// record counts one probe's result and flips the node's state when the
// threshold is reached. It returns the node's state and whether it is in
// doubt: the answers since the last flip (or the start) contradict it.
func (c *Checker) record(ctx context.Context, p prober, err error) (healthy, doubt bool) {
	logger := klog.FromContext(ctx)
	if err != nil {
		logger.V(4).Info("Health probe failed", "node", klog.KRef("", p.name), "address", p.addr, "err", err)
	}
	c.mu.Lock()
	t := c.targets[p.name]
	if t != p.t || t.gen != p.gen {
		c.mu.Unlock()
		return p.healthy, false // stale: this prober is being stopped
	}
	if err != nil {
		t.lastErr = err
	}
	if t.healthy == (err == nil) {
		t.streak = 0
	} else {
		t.streak++
	}
	threshold := c.cfg.HealthyThreshold
	if t.healthy {
		threshold = c.cfg.UnhealthyThreshold
	}
	flipped := t.streak >= threshold
	if flipped {
		t.healthy = !t.healthy
		t.streak = 0
	}
	healthy, doubt, lastErr := t.healthy, t.streak > 0, t.lastErr
	c.mu.Unlock()

	if !flipped {
		return healthy, doubt
	}
	if healthy {
		logger.Info("Node passes its health check again: healthy", "node", klog.KRef("", p.name), "address", p.addr, "successes", threshold, "lastError", lastErr)
	} else {
		logger.Info("Node fails its health check: unhealthy", "node", klog.KRef("", p.name), "address", p.addr, "failures", threshold, "err", lastErr)
	}
	c.changed()
	return healthy, doubt
}
