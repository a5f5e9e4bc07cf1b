package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"k8s.io/klog/v2"
)

// Route is a prefix routed to one node: a node's pod CIDR, announced next
// to the VIPs over the same sessions.
type Route struct {
	// Prefix is the destination, a network within Config.RoutePrefixes.
	Prefix netip.Prefix
	// Node is the node's name.
	Node string
	// NextHop is the node's address, of Prefix's family.
	NextHop netip.Addr
	// Rack is the node's rack: the routers of that rack, and the routers
	// without a rack, get the route. Empty: only routers without a rack.
	Rack string
	// AllRouters sends the route to every router, whatever its rack: for
	// flat fabrics whose routers do not pass routes on to each other.
	AllRouters bool
}

// ErrInvalidRoute is wrapped by the errors about routes the speaker
// cannot announce.
var ErrInvalidRoute = errors.New("invalid route")

// routeState is one route's prefix: what is desired and what is
// announced. A route has one path; a second one exists only while a path
// whose routers changed (rack, AllRouters) is replaced: the new one is
// announced under a new identifier before the old one is withdrawn, as
// for a VIP's node that moves rack.
type routeState struct {
	want  *Route
	attrs *pathAttributes
	// paths are the announced paths, the current one last.
	paths  []routePath
	nextID uint32
}

// normalizeRoute checks r against the configuration and returns it with
// its addresses unmapped.
func normalizeRoute(r Route, routePrefixes, exportPrefixes []netip.Prefix) (Route, error) {
	bad := func(format string, args ...any) (Route, error) {
		return Route{}, fmt.Errorf("%w %s via node %q: %s", ErrInvalidRoute, r.Prefix, r.Node, fmt.Sprintf(format, args...))
	}
	p := r.Prefix
	if !p.IsValid() {
		return bad("no prefix")
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
	}
	if p.Addr().Zone() != "" || p != p.Masked() {
		return bad("want a network address without host bits or zone (%s)", p.Masked())
	}
	if !withinAny(p, routePrefixes) {
		return bad("outside the route prefixes (the cluster CIDRs) %v", routePrefixes)
	}
	for _, e := range exportPrefixes {
		if e.Overlaps(p) {
			return bad("overlaps %s, whose addresses are VIPs", e)
		}
	}
	if r.Node == "" {
		return bad("no node name")
	}
	nh := r.NextHop.Unmap()
	if !nh.IsValid() || nh.Zone() != "" || nh.IsUnspecified() || nh.IsMulticast() {
		return bad("next hop %q is not a unicast address without zone", r.NextHop)
	}
	if nh.Is4() != p.Addr().Is4() {
		return bad("next hop %s is not of the prefix's address family", nh)
	}
	r.Prefix, r.NextHop = p, nh
	return r, nil
}

// SetRoutes makes the desired routes exactly routes: routes not in it are
// withdrawn. Only differences reach the routers: an unchanged route is
// never withdrawn or sent again, and a route whose next hop changes is
// replaced in place. Invalid routes are reported in the returned error
// and leave their prefix as it was; the valid ones are applied
// regardless. The VIPs are not touched.
func (s *Speaker) SetRoutes(ctx context.Context, routes []Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	var errs []error
	desired := make(map[netip.Prefix]*Route, len(routes))
	skip := map[netip.Prefix]bool{}
	for _, r := range routes {
		n, err := normalizeRoute(r, s.cfg.RoutePrefixes, s.cfg.ExportPrefixes)
		if err != nil {
			errs = append(errs, err)
			skip[r.Prefix] = true
			continue
		}
		if prev, dup := desired[n.Prefix]; dup {
			errs = append(errs, fmt.Errorf("%w %s: listed twice, via nodes %q and %q", ErrInvalidRoute, n.Prefix, prev.Node, n.Node))
			continue
		}
		desired[n.Prefix] = &n
	}
	for p, st := range s.routes {
		if _, ok := desired[p]; !ok && !skip[p] {
			errs = append(errs, s.reconcileRoute(ctx, p, st, nil))
		}
	}
	// In prefix order: racks get their marker indexes in the same order
	// in every replica that sees the same routes first.
	for _, p := range slices.SortedFunc(maps.Keys(desired), comparePrefixes) {
		st := s.routes[p]
		if st == nil {
			st = &routeState{nextID: 1}
			s.routes[p] = st
		}
		errs = append(errs, s.reconcileRoute(ctx, p, st, desired[p]))
	}
	klog.FromContext(ctx).WithName("bgp").V(4).Info("Set all routes", "routes", len(desired))
	return errors.Join(errs...)
}

// Routes returns the desired routes, sorted by prefix: what SetRoutes was
// last given, less what it refused. A route stays desired while the
// routers have not taken it yet (a session down, an error being retried).
func (s *Speaker) Routes() []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Route, 0, len(s.routes))
	for _, st := range s.routes {
		if st.want != nil {
			out = append(out, *st.want)
		}
	}
	slices.SortFunc(out, func(a, b Route) int { return comparePrefixes(a.Prefix, b.Prefix) })
	return out
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// reconcileRoute brings the announced paths of one route to want (nil:
// none), new path first, and forgets the route once nothing is announced
// or desired. Callers hold mu.
func (s *Speaker) reconcileRoute(ctx context.Context, prefix netip.Prefix, st *routeState, want *Route) error {
	st.want = want
	defer func() {
		if len(st.paths) == 0 {
			st.nextID = 1 // GoBGP forgets a prefix without paths
			if st.want == nil {
				delete(s.routes, prefix)
			}
		}
	}()
	if want != nil {
		if st.attrs == nil {
			st.attrs = &pathAttributes{Prefix: prefix}
		}
		p := routePath{Attrs: st.attrs, NextHop: want.NextHop, Marker: s.routeMarker(want)}
		cur := len(st.paths) - 1
		switch {
		case cur >= 0 && st.paths[cur].Marker == p.Marker && st.paths[cur].NextHop == p.NextHop:
			// unchanged
		case cur >= 0 && st.paths[cur].Marker == p.Marker:
			// Same routers: an implicit replacement.
			p.ID = st.paths[cur].ID
			if err := s.router.addPath(ctx, p); err != nil {
				return fmt.Errorf("updating route %s via %s (%s): %w", prefix, want.Node, want.NextHop, err)
			}
			st.paths[cur] = p
		default:
			p.ID = st.nextID
			if err := s.router.addPath(ctx, p); err != nil {
				return fmt.Errorf("announcing route %s via %s (%s): %w", prefix, want.Node, want.NextHop, err)
			}
			st.nextID++
			st.paths = append(st.paths, p)
		}
	}
	keep := 0
	if want != nil {
		keep = 1
	}
	for len(st.paths) > keep {
		old := st.paths[0]
		if err := s.router.deletePath(ctx, withdrawal(prefix, &pathState{id: old.ID, nextHop: old.NextHop})); err != nil {
			return fmt.Errorf("withdrawing route %s via %s: %w", prefix, old.NextHop, err)
		}
		st.paths = st.paths[1:]
	}
	return nil
}

// routeMarker is the marker that sends r to its routers: its rack's, the
// one every rack accepts, or none (routers without a rack only).
func (s *Speaker) routeMarker(r *Route) LargeCommunity {
	switch {
	case r.AllRouters:
		return marker(s.cfg.ASN, allRacksMarker)
	case r.Rack != "":
		return marker(s.cfg.ASN, s.rackIndex(r.Rack))
	}
	return LargeCommunity{}
}

// allRacksMarker is the marker index that every rack's routers accept
// (rack indexes start at 1).
const allRacksMarker = 0

// reconcileRoutes re-reconciles every route after a configuration change:
// the routes outside the new route prefixes, or overlapping the new export
// prefixes, are withdrawn and forgotten; the others are announced again
// where the router lost them (a restarted GoBGP). Unchanged routes cost
// nothing. Callers hold mu.
func (s *Speaker) reconcileRoutes(ctx context.Context) error {
	var errs []error
	var gone int
	for p, st := range s.routes {
		want := st.want
		if want != nil {
			if _, err := normalizeRoute(*want, s.cfg.RoutePrefixes, s.cfg.ExportPrefixes); err != nil {
				gone++
				want = nil
			}
		}
		errs = append(errs, s.reconcileRoute(ctx, p, st, want))
	}
	if gone > 0 {
		klog.FromContext(ctx).WithName("bgp").Info("Withdrew routes outside the new route prefixes", "routes", gone)
	}
	return errors.Join(errs...)
}

// forgetRoutePaths forgets what was announced, after the router was
// replaced by one with an empty RIB. Callers hold mu.
func (s *Speaker) forgetRoutePaths() {
	for p, st := range s.routes {
		st.paths, st.nextID = nil, 1
		if st.want == nil {
			delete(s.routes, p)
		}
	}
}

// validateRoutePrefixes checks what the speaker relies on; the cloud
// config's parser has reported mistakes in detail.
func validateRoutePrefixes(prefixes []netip.Prefix) []error {
	var errs []error
	for _, p := range prefixes {
		if !p.IsValid() || p.Addr().Zone() != "" || p.Bits() == 0 {
			errs = append(errs, fmt.Errorf("route prefix %q: want a valid prefix without zone, not a default route", p))
		}
	}
	return errs
}
