package provider

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// sync is the announcer's sync loop's work: the changes since the last
// sync. After a failure everything is marked dirty, so that the retry
// (with backoff) is a full sync.
func (a *announcer) sync(ctx context.Context) error {
	c := a.dirty.take()
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.syncChanges(ctx, c)
	if err != nil {
		a.index = nil
		a.dirty.markAll()
	}
	return err
}

// syncChanges recomputes the VIPs that the changes c can move, and only
// those, and hands the speaker those that came out different: a change
// costs what it touches, not what is announced. It is a full sync
// (syncAllLocked) when c asks for one, when there was none yet or the
// last failed, and when the speaker or the config is another one than
// the index was computed for. The periodic re-assertion (c.verify) is a
// sync of changes too, of a slice of everything (see verifyDirty).
// Callers hold mu.
//
// Announcing VIP by VIP keeps SetAll's guarantees: the speaker
// reconciles each VIP against what it announces (its paths keep their
// ADD-PATH identifiers), and each VIP is handed over once per sync with
// its whole desired state, never withdrawn to be announced again.
func (a *announcer) syncChanges(ctx context.Context, c changes) error {
	sp := a.speaker()
	cfg := a.config()
	if c.all || a.index == nil || sp == nil || sp != a.sentTo || cfg != a.cfg {
		return a.syncAllLocked(ctx)
	}
	dirty := map[netip.Addr]struct{}{}
	for range c.verify {
		began, err := a.verifyDirty(dirty)
		if err != nil {
			return err
		}
		if began {
			// Nodes and health are compared afresh once a round.
			c.nodes, c.health = true, true
		}
	}
	if c.nodes {
		if err := a.nodesDirty(cfg, dirty); err != nil {
			return err
		}
	}
	if c.health {
		a.healthDirty(dirty)
	}
	for key := range c.services {
		a.serviceDirty(key, dirty)
	}
	if len(dirty) == 0 {
		a.reportChanged(nil, c.services)
		return nil
	}
	scope := slices.SortedFunc(maps.Keys(dirty), netip.Addr.Compare)
	v, err := a.view(cfg, a.cands, nil, scope)
	if err != nil {
		return err
	}
	peers := sp.Peers()
	var changed map[netip.Addr]*vipOutcome
	// touched are the Services whose conditions may follow: the ones
	// that changed, and the holders of the VIPs whose outcome changed.
	touched := maps.Clone(c.services)
	if touched == nil {
		touched = map[string]struct{}{}
	}
	var errs []error
	for _, vip := range scope {
		adv, err := a.settle(ctx, sp, v, vip, a.healthy)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var o *vipOutcome
		if len(v.holders[vip]) > 0 {
			out := newVIPOutcome(adv, a.failOpen[vip], peers)
			o = &out
		}
		if prev, had := a.outcomes.outcome(vip); (o == nil && had) || (o != nil && (!had || prev != *o)) {
			if changed == nil {
				changed = map[netip.Addr]*vipOutcome{}
			}
			changed[vip] = o
			for _, s := range v.holders[vip] {
				touched[serviceKey(s.Namespace, s.Name)] = struct{}{}
			}
		}
	}
	a.reportChanged(changed, touched)
	return errors.Join(errs...)
}

// verifyDirty adds to dirty the VIPs of the next slice of the periodic
// re-assertion, dealt out when the round began (beginRound). Each
// resyncSlices calls, every VIP has been recomputed once, so that an
// event missed is set right within resyncInterval, while no sync
// rebuilds everything at once. It tells whether this slice began a
// round. Callers hold mu.
func (a *announcer) verifyDirty(dirty map[netip.Addr]struct{}) (began bool, err error) {
	slice := a.nextSlice
	if slice == 0 {
		if err := a.beginRound(); err != nil {
			return false, err
		}
	}
	a.nextSlice = (slice + 1) % resyncSlices
	for _, vip := range a.roundVIPs[slice] {
		dirty[vip] = struct{}{}
	}
	a.roundVIPs[slice] = nil
	if slice == resyncSlices-1 {
		a.warn.endSweep()
	}
	return slice == 0, nil
}

// beginRound deals out the VIPs into the slices of a new round of the
// periodic re-assertion: those the index knows (announced or held) and
// those of every Service as the caches have them, so that a Service
// whose event was missed is found too. It is also a sweep of the
// warnings (see warner): each Service's is looked at now, the Nodes' at
// the round's first slice (its nodes comparison), and the problems of
// objects gone are forgotten at the round's end. A VIP or Service
// that comes during the round is synced by its own event.
func (a *announcer) beginRound() error {
	svcs, err := a.services.List(everything)
	if err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	a.warn.beginSweep()
	vips := make(map[netip.Addr]struct{}, len(a.index.sent))
	for vip := range a.index.sent {
		vips[vip] = struct{}{}
	}
	for vip := range a.index.holders {
		vips[vip] = struct{}{}
	}
	for _, s := range svcs {
		for _, ip := range a.checkedAddresses(s) {
			vips[ip] = struct{}{}
		}
	}
	i := 0
	for vip := range vips {
		a.roundVIPs[i%resyncSlices] = append(a.roundVIPs[i%resyncSlices], vip)
		i++
	}
	return nil
}

// reportChanged updates the outcomes with changed (nil: the VIP is no
// longer held) and reports them with the Services whose conditions may
// follow. Nothing is reported when there are neither.
func (a *announcer) reportChanged(changed map[netip.Addr]*vipOutcome, services map[string]struct{}) {
	if len(changed) == 0 && len(services) == 0 {
		return
	}
	a.outcomes.update(changed)
	if a.report != nil {
		keys := make([]string, 0, len(services)) // not nil: nil is every Service
		a.report(a.outcomes, append(keys, slices.Sorted(maps.Keys(services))...))
	}
}

// nodesDirty recomputes the candidates and adds to dirty the VIPs each
// node whose candidacy changed (it became or ceased to be one, or its
// addresses or rack changed) could carry before or after: the VIPs
// without a Local holder of its families, and the Local ones with an
// endpoint on it. A node's change can change another's: the newer of two
// Nodes with one address loses it.
func (a *announcer) nodesDirty(cfg *config.Config, dirty map[netip.Addr]struct{}) error {
	cands, err := a.freshCandidates(cfg)
	if err != nil {
		return err
	}
	old := make(map[string]candidate, len(a.cands))
	for _, c := range a.cands {
		old[c.name] = c
	}
	for _, c := range cands {
		o, had := old[c.name]
		delete(old, c.name)
		if had && o.rack == c.rack && slices.Equal(o.addrs, c.addrs) {
			continue
		}
		if had {
			a.index.ofNode(o, dirty)
		}
		a.index.ofNode(c, dirty)
		a.healthy[c.name] = a.health.Healthy(c.name)
	}
	for name, o := range old { // no longer candidates
		a.index.ofNode(o, dirty)
		delete(a.healthy, name)
	}
	a.cands = cands
	return nil
}

// healthDirty adds to dirty the VIPs each candidate whose health check
// flipped may carry.
func (a *announcer) healthDirty(dirty map[netip.Addr]struct{}) {
	for _, c := range a.cands {
		if h := a.health.Healthy(c.name); h != a.healthy[c.name] {
			a.healthy[c.name] = h
			a.index.ofNode(c, dirty)
		}
	}
}

// serviceDirty adds to dirty the VIPs the Service key held at the last
// sync and those it holds now, and warns once if one of them may not be
// announced.
func (a *announcer) serviceDirty(key string, dirty map[netip.Addr]struct{}) {
	a.index.ofService(key, dirty)
	ns, name, _ := strings.Cut(key, "/")
	s, err := a.services.Services(ns).Get(name)
	if err != nil {
		return
	}
	for _, ip := range a.checkedAddresses(s) {
		dirty[ip] = struct{}{}
	}
}
