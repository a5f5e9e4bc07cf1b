package provider

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// routeKey names one pod CIDR of one node, as the route controller names
// a route (TargetNode, DestinationCIDR).
type routeKey struct {
	node string
	cidr string // as written in spec.podCIDRs
}

// routeProblem is why a pod CIDR of a node is not routed.
type routeProblem struct {
	key routeKey
	msg string
}

// desiredRoutes are the pod routes of nodes: each pod CIDR of each Node,
// next hop the Node's first address of the CIDR's family, to the routers
// of its rack. Every replica computes the same from the same Nodes. A pod
// CIDR that cannot be routed is left out with a problem that says why,
// and no problem of one Node changes another Node's routes, with one
// rule for a conflict: when pod CIDRs (or next hop addresses) of two
// Nodes overlap, the older Node keeps its route and the newer one has the
// problem. vips are the prefixes whose addresses are VIPs.
func desiredRoutes(nodes []*v1.Node, cfg *config.Config, vips []netip.Prefix) ([]bgp.Route, []routeProblem) {
	byAge := slices.Clone(nodes)
	sort.Slice(byAge, func(i, j int) bool { return olderNode(byAge[i], byAge[j]) })
	reach := reachOf(cfg)

	var routes []bgp.Route
	var problems []routeProblem
	var keys []routeKey // of routes, same index
	addrOwner := map[netip.Addr]string{}
	for _, n := range byAge {
		c := newCandidate(n, cfg)
		// The next hop must be the Node's own: an address an older Node
		// has is not (see candidates).
		var own []netip.Addr
		for _, a := range c.addrs {
			if o, taken := addrOwner[a]; taken && o != n.Name {
				continue
			}
			addrOwner[a] = n.Name
			own = append(own, a)
		}
		families := map[bool]string{}
		for i, s := range podCIDRs(n) {
			k := routeKey{node: n.Name, cidr: s}
			if i >= maxPodCIDRsPerNode {
				problems = append(problems, routeProblem{key: k, msg: fmt.Sprintf("the Node has more than %d pod CIDRs; one per family", maxPodCIDRsPerNode)})
				continue
			}
			r, err := nodeRoute(n.Name, s, own, c.rack, cfg, vips, reach)
			if err == "" {
				if other, dup := families[r.Prefix.Addr().Is4()]; dup {
					err = fmt.Sprintf("the Node has a pod CIDR of this family already (%s); one per family", other)
				}
			}
			if err != "" {
				problems = append(problems, routeProblem{key: k, msg: err})
				continue
			}
			families[r.Prefix.Addr().Is4()] = s
			routes = append(routes, r)
			keys = append(keys, k)
		}
	}
	return dropOverlaps(routes, keys, problems)
}

// podCIDRs returns the Node's pod CIDRs: spec.podCIDRs, or the older
// spec.podCIDR alone. At most a few: the apiserver allows two.
func podCIDRs(n *v1.Node) []string {
	if len(n.Spec.PodCIDRs) > 0 {
		return n.Spec.PodCIDRs
	}
	if n.Spec.PodCIDR != "" {
		return []string{n.Spec.PodCIDR}
	}
	return nil
}

// maxPodCIDRsPerNode bounds the pod CIDRs read from one Node: the
// apiserver allows two (one per family).
const maxPodCIDRsPerNode = 2

// nodeRoute is the route of one pod CIDR s of a node, or why there is
// none.
func nodeRoute(node, s string, addrs []netip.Addr, rack string, cfg *config.Config, vips []netip.Prefix, reach routeReach) (bgp.Route, string) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return bgp.Route{}, fmt.Sprintf("pod CIDR %q is not a CIDR", s)
	case p.Addr().Is4In6() || p.Addr().Zone() != "":
		return bgp.Route{}, fmt.Sprintf("pod CIDR %s is not a plain IPv4 or IPv6 network", s)
	case p != p.Masked():
		return bgp.Route{}, fmt.Sprintf("pod CIDR %s has host bits set (the network is %s)", s, p.Masked())
	}
	if !slices.ContainsFunc(cfg.Routes.ClusterCIDRs, func(c netip.Prefix) bool { return c.Bits() <= p.Bits() && c.Contains(p.Addr()) }) {
		return bgp.Route{}, fmt.Sprintf("pod CIDR %s is outside the cluster CIDRs of the cloud config (routes.clusterCIDRs: %s)", s, joinPrefixes(cfg.Routes.ClusterCIDRs))
	}
	for _, v := range vips {
		if v.Overlaps(p) {
			return bgp.Route{}, fmt.Sprintf("pod CIDR %s overlaps %s, whose addresses are LoadBalancer VIPs", s, v)
		}
	}
	i := slices.IndexFunc(addrs, func(a netip.Addr) bool { return a.Is4() == p.Addr().Is4() })
	if i < 0 {
		fam := "IPv6"
		if p.Addr().Is4() {
			fam = "IPv4"
		}
		return bgp.Route{}, fmt.Sprintf("the Node has no %s address of its own (InternalIP or ExternalIP) to route pod CIDR %s to", fam, s)
	}
	r := bgp.Route{Prefix: p, Node: node, NextHop: addrs[i], Rack: rack, AllRouters: cfg.Routes.AllRouters}
	if msg := reach.problem(r); msg != "" {
		return bgp.Route{}, fmt.Sprintf("pod CIDR %s: %s", s, msg)
	}
	return r, ""
}

// routeReach tells which routes some configured router receives.
type routeReach struct {
	rackless bool            // a router without a rack takes every route
	racks    map[string]bool // racks with routers of their own
	any      bool
}

func reachOf(cfg *config.Config) routeReach {
	r := routeReach{racks: map[string]bool{}, any: len(cfg.BGP.Peers) > 0}
	for _, p := range cfg.BGP.Peers {
		if p.Rack == "" {
			r.rackless = true
		} else {
			r.racks[p.Rack] = true
		}
	}
	return r
}

// problem says why no configured router receives the route; empty when
// one does.
func (r routeReach) problem(rt bgp.Route) string {
	switch {
	case !r.any:
		return "the cloud config has no BGP peers"
	case rt.AllRouters || r.rackless:
		return ""
	case rt.Rack == "":
		return "the Node is in no rack and every BGP peer has one (put the Node's address in a rack's subnets, or use routes.announceTo: all)"
	case !r.racks[rt.Rack]:
		return fmt.Sprintf("no BGP peer is in the Node's rack %q (add its router, or use routes.announceTo: all)", rt.Rack)
	}
	return ""
}

// dropOverlaps removes the routes whose prefix overlaps the prefix of a
// route kept before it (an older Node's: routes are in age order),
// turning them into problems. A route dropped takes nothing from anybody.
func dropOverlaps(routes []bgp.Route, keys []routeKey, problems []routeProblem) ([]bgp.Route, []routeProblem) {
	older := map[int][]int{} // index -> the earlier routes it overlaps
	for _, pair := range overlappingPairs(routes) {
		o, n := min(pair[0], pair[1]), max(pair[0], pair[1])
		older[n] = append(older[n], o)
	}
	kept := make([]bgp.Route, 0, len(routes))
	isKept := make([]bool, len(routes))
	for i, r := range routes {
		if k := slices.IndexFunc(older[i], func(j int) bool { return isKept[j] }); k >= 0 {
			o := routes[older[i][k]]
			problems = append(problems, routeProblem{key: keys[i], msg: fmt.Sprintf("pod CIDR %s overlaps pod CIDR %s of the older Node %s", keys[i].cidr, o.Prefix, o.Node)})
			continue
		}
		isKept[i] = true
		kept = append(kept, r)
	}
	return kept, problems
}

// overlappingPairs returns the index pairs of routes whose prefixes
// overlap. Two prefixes overlap when one contains the other: in address
// order, the prefixes containing a prefix are on a stack of the prefixes
// still open at its address, so this is O(n log n) plus the pairs.
func overlappingPairs(routes []bgp.Route) [][2]int {
	order := make([]int, len(routes))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		pa, pb := routes[a].Prefix, routes[b].Prefix
		if c := pa.Addr().Compare(pb.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(pa.Bits(), pb.Bits())
	})
	var pairs [][2]int
	var open []int
	for _, i := range order {
		a := routes[i].Prefix.Addr()
		for len(open) > 0 && !routes[open[len(open)-1]].Prefix.Contains(a) {
			open = open[:len(open)-1]
		}
		for _, j := range open {
			pairs = append(pairs, [2]int{j, i})
		}
		open = append(open, i)
	}
	return pairs
}

func joinPrefixes(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "none"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
