package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"k8s.io/klog/v2"
)

type appliedPeer struct {
	Peer
	key string // everything that the router's neighbor depends on
}

func peerKey(n *neighbor) string {
	return fmt.Sprintf("%s|%s|%d|%d|%s|%d|%s|%q|%s|%s|%v|%s|%d|%d|%d",
		n.Name, n.Address, n.ASN, n.Port, n.Rack, n.EBGPMultihop, n.LocalAddress, n.Password,
		n.HoldTime, n.KeepaliveTime, n.GracefulRestart.Enabled, n.GracefulRestart.RestartTime, n.MaxPathsPerPrefix,
		n.MaxPrefixes, n.TTLSecurity)
}

// neighborOf is everything the router needs to peer with p.
func neighborOf(p *Peer, password string, cfg *Config) neighbor {
	return neighbor{
		Peer:              *p,
		Password:          password,
		HoldTime:          cfg.HoldTime,
		KeepaliveTime:     cfg.KeepaliveTime,
		GracefulRestart:   cfg.GracefulRestart,
		MaxPathsPerPrefix: cfg.MaxPathsPerPrefix,
	}
}

// rackIndex returns the marker index of rack, allocating one on first
// sight. Indexes are never reused, so two racks never share a marker.
// Callers hold mu.
func (s *Speaker) rackIndex(rack string) uint32 {
	if i, ok := s.racks[rack]; ok {
		return i
	}
	i := uint32(len(s.racks)) + 1
	s.racks[rack] = i
	return i
}

// routingPolicy is the policy for cfg. Callers hold mu.
func (s *Speaker) routingPolicy(cfg *Config) routingPolicy {
	p := routingPolicy{ASN: cfg.ASN, ExportPrefixes: slices.Concat(cfg.ExportPrefixes, cfg.RoutePrefixes)}
	byRack := map[string][]netip.Addr{}
	for _, peer := range cfg.Peers {
		if peer.Rack == "" {
			p.Rackless = append(p.Rackless, peer.Address)
		} else {
			byRack[peer.Rack] = append(byRack[peer.Rack], peer.Address)
		}
	}
	racks := make([]string, 0, len(byRack))
	for r := range byRack {
		racks = append(racks, r)
	}
	slices.Sort(racks)
	for _, r := range racks {
		p.Racks = append(p.Racks, rackRouters{Marker: marker(cfg.ASN, s.rackIndex(r)), Routers: byRack[r]})
	}
	return p
}

// applyPeers makes the router's neighbors, the policy and the announced
// paths match cfg, and makes cfg the speaker's configuration. Callers
// hold mu.
func (s *Speaker) applyPeers(ctx context.Context, cfg *Config, passwords map[string]string) error {
	want := make(map[string]appliedPeer, len(cfg.Peers))
	for i := range cfg.Peers {
		p := &cfg.Peers[i]
		n := neighborOf(p, passwords[p.Name], cfg)
		want[p.Name] = appliedPeer{Peer: *p, key: peerKey(&n)}
	}
	// 1. Disconnect removed and changed routers.
	kept, err := s.removePeers(ctx, want)
	if err != nil {
		return err
	}
	// 2. The policy for the new set of routers, before their sessions
	// exist, so that a new router gets exactly its paths.
	if err := s.router.setPolicy(ctx, s.routingPolicy(cfg)); err != nil {
		return fmt.Errorf("setting the BGP export policy: %w", err)
	}
	// 3. The paths: which nodes to announce depends on the routers' racks
	// and on maxPathsPerPrefix; which VIPs, on the export prefixes.
	if err := s.applyPaths(ctx, cfg); err != nil {
		return err
	}
	// 4. Connect new and changed routers.
	return s.addPeers(ctx, cfg, passwords, want, kept)
}

// removePeers deletes the applied routers that cfg no longer has as they
// are, and returns those it kept. Callers hold mu.
func (s *Speaker) removePeers(ctx context.Context, want map[string]appliedPeer) ([]appliedPeer, error) {
	log := klog.FromContext(ctx).WithName("bgp")
	s.statMu.Lock()
	current := slices.Clone(s.applied)
	s.statMu.Unlock()
	var kept []appliedPeer
	for i, a := range current {
		if w, ok := want[a.Name]; ok && w.key == a.key {
			kept = append(kept, a)
			continue
		}
		if err := s.router.deletePeer(ctx, a.Address); err != nil {
			s.setApplied(append(kept, current[i:]...))
			return nil, fmt.Errorf("removing BGP peer %q (%s): %w", a.Name, a.Address, err)
		}
		log.Info("Removed BGP peer", "peer", a.Name, "address", a.Address)
	}
	s.setApplied(kept)
	return kept, nil
}

// applyPaths makes cfg the speaker's configuration and re-reconciles the
// VIPs when what they need changed: VIPs outside the new export prefixes
// are withdrawn and forgotten. Callers hold mu.
func (s *Speaker) applyPaths(ctx context.Context, cfg *Config) error {
	nv := viewsOf(cfg.Peers)
	changed := !nv.equal(s.views) || cfg.MaxPathsPerPrefix != s.cfg.MaxPathsPerPrefix
	exportChanged := !slices.Equal(cfg.ExportPrefixes, s.cfg.ExportPrefixes)
	s.cfg = *cfg
	s.views = nv
	var errs []error
	if exportChanged {
		var gone []reconcileItem
		for p := range s.vips {
			if !withinAny(p, cfg.ExportPrefixes) {
				gone = append(gone, reconcileItem{prefix: p})
			}
		}
		if len(gone) > 0 {
			klog.FromContext(ctx).WithName("bgp").Info("Withdrawing VIPs outside the new export prefixes", "vips", len(gone))
			errs = append(errs, s.reconcileMany(ctx, gone)...)
		}
	}
	if changed {
		errs = append(errs, s.reconcileAll(ctx))
	}
	errs = append(errs, s.reconcileRoutes(ctx))
	if err := errors.Join(errs...); err != nil {
		s.views = views{} // reconcile everything on the next attempt
		return err
	}
	return nil
}

// addPeers connects the routers of cfg that are not kept, and records the
// applied routers in cfg's order. Callers hold mu.
func (s *Speaker) addPeers(ctx context.Context, cfg *Config, passwords map[string]string, want map[string]appliedPeer, kept []appliedPeer) error {
	log := klog.FromContext(ctx).WithName("bgp")
	isKept := make(map[string]bool, len(kept))
	for _, a := range kept {
		isKept[a.Name] = true
	}
	applied := kept
	for i := range cfg.Peers {
		p := &cfg.Peers[i]
		if isKept[p.Name] {
			continue
		}
		if err := s.router.addPeer(ctx, neighborOf(p, passwords[p.Name], cfg)); err != nil {
			s.setApplied(applied)
			return fmt.Errorf("adding BGP peer %q (%s): %w", p.Name, p.Address, err)
		}
		applied = append(applied, want[p.Name])
		log.Info("Added BGP peer", "peer", p.Name, "address", p.Address, "asn", p.ASN, "rack", p.Rack, "md5", passwords[p.Name] != "",
			"maxPrefixes", p.MaxPrefixes, "ttlSecurity", p.TTLSecurity)
	}
	// Keep the configuration's order for Peers.
	order := make(map[string]int, len(cfg.Peers))
	for i, p := range cfg.Peers {
		order[p.Name] = i
	}
	slices.SortFunc(applied, func(a, b appliedPeer) int { return cmp.Compare(order[a.Name], order[b.Name]) })
	s.setApplied(applied)
	return nil
}

func (s *Speaker) setApplied(a []appliedPeer) {
	s.statMu.Lock()
	s.applied = slices.Clone(a)
	s.statMu.Unlock()
}
