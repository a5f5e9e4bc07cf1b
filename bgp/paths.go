package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// vipState is one VIP: what is desired and what is announced.
type vipState struct {
	adv   *Advertisement  // desired; nil while only withdrawals remain
	gen   uint32          // bumped when the desired attributes change
	attrs *pathAttributes // the attributes of adv, built on demand
	paths map[string]*pathState
	// orphans are replaced paths still to withdraw (a node that moved
	// rack is announced anew before its old path goes).
	orphans []*pathState
	// nextID is the next path identifier. Identifiers are allocated in
	// order and never reused while the VIP has paths, which is exactly
	// how GoBGP v3 numbers a prefix's local paths on the wire: routers
	// therefore see these identifiers.
	nextID uint32
}

// pathState is one announced path.
type pathState struct {
	id      uint32
	nextHop netip.Addr
	rack    string
	weight  uint64
	share   uint32 // NextHop.Share: the link bandwidth it was announced with
	gen     uint32 // vipState.gen it was announced with
}

func newVIPState() *vipState {
	return &vipState{paths: map[string]*pathState{}, nextID: 1}
}

// reconcileAll re-reconciles every VIP against its desired state, after
// the routers' racks or maxPathsPerPrefix changed. Callers hold mu.
func (s *Speaker) reconcileAll(ctx context.Context) error {
	work := make([]reconcileItem, 0, len(s.vips))
	for p, v := range s.vips {
		work = append(work, reconcileItem{prefix: p, adv: v.adv})
	}
	return errors.Join(s.reconcileMany(ctx, work)...)
}

type reconcileItem struct {
	prefix netip.Prefix
	adv    *Advertisement // nil: withdraw
}

// reconcileWorkers is how many VIPs are reconciled at once. Every GoBGP
// call is a round trip to GoBGP's single server loop; with several VIPs
// in flight the loop never waits for a caller to wake up, which doubles
// the announcement rate. The paths of one VIP stay in order.
const reconcileWorkers = 8

// reconcileMany reconciles many VIPs, withdrawals first, several at a time.
// Callers hold mu.
func (s *Speaker) reconcileMany(ctx context.Context, work []reconcileItem) []error {
	slices.SortFunc(work, func(a, b reconcileItem) int {
		if (a.adv == nil) != (b.adv == nil) {
			if a.adv == nil {
				return -1
			}
			return 1
		}
		return a.prefix.Compare(b.prefix)
	})
	// Sequential: map changes and marker allocation.
	states := make([]*vipState, len(work))
	for i, w := range work {
		v := s.vips[w.prefix]
		if v == nil && w.adv != nil {
			v = newVIPState()
			s.vips[w.prefix] = v
		}
		states[i] = v
		if w.adv != nil {
			for _, h := range w.adv.NextHops {
				if h.Rack != "" {
					s.rackIndex(h.Rack)
				}
			}
		}
	}
	errs := s.runWorkers(ctx, len(work), func(i int) error {
		if states[i] == nil {
			return nil
		}
		return s.reconcileVIP(ctx, work[i].prefix, states[i], work[i].adv)
	})
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("reconciling %d VIPs: %w", len(work), err))
	}
	for i, w := range work {
		if v := states[i]; v != nil {
			s.forgetIfEmpty(w.prefix, v)
		}
	}
	return errs
}

// runWorkers calls f(0..n-1) on up to reconcileWorkers goroutines, until
// ctx ends, and returns the errors.
func (s *Speaker) runWorkers(ctx context.Context, n int, f func(i int) error) []error {
	var (
		mu   sync.Mutex
		errs []error
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range min(reconcileWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

// forgetIfEmpty resets a VIP without paths and drops it when nothing is
// desired either. Callers hold mu.
func (s *Speaker) forgetIfEmpty(prefix netip.Prefix, v *vipState) {
	if len(v.paths) == 0 && len(v.orphans) == 0 {
		// GoBGP drops a prefix with no paths, and with it its
		// identifier numbering.
		v.nextID = 1
		if v.adv == nil {
			delete(s.vips, prefix)
		}
	}
}

// reconcile brings the announced paths of one VIP to adv (nil: none).
// Callers hold mu.
func (s *Speaker) reconcile(ctx context.Context, prefix netip.Prefix, adv *Advertisement) error {
	v := s.vips[prefix]
	if v == nil {
		if adv == nil {
			return nil
		}
		v = newVIPState()
		s.vips[prefix] = v
	}
	err := s.reconcileVIP(ctx, prefix, v, adv)
	s.forgetIfEmpty(prefix, v)
	return err
}

// vipChange counts what one reconciliation sent.
type vipChange struct{ added, replaced, withdrawn int }

// reconcileVIP brings the announced paths of v to adv. Order: new paths
// first, then replacements, then withdrawals, so that a VIP that keeps
// some node never has a moment without a path, and a node that moves rack
// is announced under its new identifier before the old one goes. It
// touches only v, the counters (under statMu) and the router, so that
// different VIPs can be reconciled at once; callers hold mu.
func (s *Speaker) reconcileVIP(ctx context.Context, prefix netip.Prefix, v *vipState, adv *Advertisement) error {
	before := s.contribution(prefix, v)
	defer func() {
		after := s.contribution(prefix, v)
		s.statMu.Lock()
		s.counters[before.fam].add(before, -1)
		s.counters[after.fam].add(after, +1)
		s.statMu.Unlock()
	}()

	if adv != nil && (v.adv == nil || !sameAttributes(v.adv, adv)) {
		v.gen++
		v.attrs = nil
	}
	v.adv = adv
	var want []rankedHop
	if adv != nil {
		want = s.views.choose(rank(prefix.Addr(), adv.NextHops), s.cfg.MaxPathsPerPrefix)
	}
	var c vipChange
	err := s.addNewPaths(ctx, prefix, v, want, &c)
	if err == nil {
		err = s.replaceChangedPaths(ctx, prefix, v, want, &c)
	}
	if err == nil {
		err = s.withdrawUnwanted(ctx, prefix, v, want, &c)
	}
	if c != (vipChange{}) {
		if l := klog.FromContext(ctx).WithName("bgp").V(4); l.Enabled() {
			l.Info("Reconciled VIP", "vip", prefix, "paths", len(v.paths), "added", c.added, "replaced", c.replaced, "withdrawn", c.withdrawn)
		}
	}
	return err
}

// attributes returns v's path attributes, built on first use; asn is the
// speaker's.
func (v *vipState) attributes(asn uint32) *pathAttributes {
	if v.attrs == nil {
		v.attrs = &pathAttributes{
			ASN:              asn,
			Prefix:           v.adv.Prefix,
			Communities:      v.adv.Communities,
			LargeCommunities: v.adv.LargeCommunities,
			LocalPref:        v.adv.LocalPref,
			TransitiveLB:     v.adv.TransitiveLinkBandwidth,
		}
	}
	return v.attrs
}

// addNewPaths announces the wanted nodes without a path, and those that
// moved rack: the rack's marker decides which routers accept the path,
// and the router does not withdraw a replaced path from routers that no
// longer accept it. So it becomes a new path and the old one an orphan.
func (s *Speaker) addNewPaths(ctx context.Context, prefix netip.Prefix, v *vipState, want []rankedHop, c *vipChange) error {
	for _, h := range want {
		p := v.paths[h.Node]
		if p != nil && p.rack == h.Rack {
			continue
		}
		np := &pathState{id: v.nextID, nextHop: h.Addr, rack: h.Rack, weight: h.weight, share: h.Share, gen: v.gen}
		if err := s.router.addPath(ctx, s.routePath(v, np)); err != nil {
			return fmt.Errorf("announcing %s via %s (%s): %w", prefix, h.Node, h.Addr, err)
		}
		v.nextID++
		if p != nil {
			v.orphans = append(v.orphans, p)
		}
		v.paths[h.Node] = np
		c.added++
	}
	return nil
}

// replaceChangedPaths announces again, under the same identifier, the
// paths whose attributes, next hop or share changed: a change of one
// node's share re-sends that node's path alone.
func (s *Speaker) replaceChangedPaths(ctx context.Context, prefix netip.Prefix, v *vipState, want []rankedHop, c *vipChange) error {
	for _, h := range want {
		p := v.paths[h.Node]
		if p.gen == v.gen && p.nextHop == h.Addr && p.share == h.Share {
			continue
		}
		np := *p
		np.nextHop, np.gen, np.share = h.Addr, v.gen, h.Share
		if err := s.router.addPath(ctx, s.routePath(v, &np)); err != nil {
			return fmt.Errorf("updating %s via %s (%s): %w", prefix, h.Node, h.Addr, err)
		}
		*p = np
		c.replaced++
	}
	return nil
}

// withdrawUnwanted withdraws the paths via nodes no longer wanted, then
// the orphans.
func (s *Speaker) withdrawUnwanted(ctx context.Context, prefix netip.Prefix, v *vipState, want []rankedHop, c *vipChange) error {
	wanted := make(map[string]bool, len(want))
	for _, h := range want {
		wanted[h.Node] = true
	}
	for node, p := range v.paths {
		if wanted[node] {
			continue
		}
		if err := s.router.deletePath(ctx, withdrawal(prefix, p)); err != nil {
			return fmt.Errorf("withdrawing %s via %s (%s): %w", prefix, node, p.nextHop, err)
		}
		delete(v.paths, node)
		c.withdrawn++
	}
	for len(v.orphans) > 0 {
		p := v.orphans[0]
		if err := s.router.deletePath(ctx, withdrawal(prefix, p)); err != nil {
			return fmt.Errorf("withdrawing the previous path of %s via %s: %w", prefix, p.nextHop, err)
		}
		v.orphans = v.orphans[1:]
		c.withdrawn++
	}
	return nil
}

// routePath is the router's path for p, a path of v.
func (s *Speaker) routePath(v *vipState, p *pathState) routePath {
	rp := routePath{Attrs: v.attributes(s.cfg.ASN), ID: p.id, NextHop: p.nextHop, MED: med(p.weight), Share: p.share}
	if p.rack != "" {
		rp.Marker = marker(s.cfg.ASN, s.rackIndex(p.rack))
	}
	return rp
}

// withdrawal identifies the path p of prefix to the router.
func withdrawal(prefix netip.Prefix, p *pathState) routePath {
	return routePath{Attrs: &pathAttributes{Prefix: prefix}, ID: p.id, NextHop: p.nextHop}
}

// contribution is the VIP's share of the counters behind Peers.
func (s *Speaker) contribution(prefix netip.Prefix, v *vipState) contribution {
	c := contribution{fam: familyIndex(prefix.Addr()), paths: len(v.paths)}
	c.capped = min(c.paths, s.cfg.MaxPathsPerPrefix)
	var best *pathState
	for _, p := range v.paths {
		if p.rack != "" {
			if c.byRack == nil {
				c.byRack = map[string]int{}
			}
			c.byRack[p.rack]++
		}
		if best == nil || p.weight > best.weight {
			best = p
		}
	}
	if best != nil {
		c.bestRack = best.rack
	}
	return c
}
