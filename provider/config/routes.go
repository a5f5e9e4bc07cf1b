package config

import (
	"fmt"
	"net/netip"

	"go4.org/netipx"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Where pod routes go (routes.announceTo).
const (
	// AnnounceToRack sends a node's pod CIDR to the routers of its rack
	// (and to routers without a rack); the fabric carries it further.
	AnnounceToRack = "rack"
	// AnnounceToAll sends every pod CIDR to every router, for flat
	// fabrics whose routers do not pass routes on to each other.
	AnnounceToAll = "all"
)

// The shortest cluster CIDRs accepted: a pod network larger than this
// would take over much of the fabric's address space, and a default
// route (/0) all of it.
const (
	minClusterCIDRBits4 = 8
	minClusterCIDRBits6 = 16
)

// RoutesFile is the YAML form of `routes:`, the pod routes: each node's
// pod CIDR announced to the routers with the node as next hop.
type RoutesFile struct {
	// Enabled turns the routes off when false. Default: true when the
	// section is present; without the section there are no routes.
	Enabled *bool `json:"enabled,omitempty"`
	// ClusterCIDRs are the pod networks, at most one per family: the
	// --cluster-cidr of kube-controller-manager's node IPAM (kubeadm's
	// networking.podSubnet). Only pod CIDRs inside them are announced.
	ClusterCIDRs []string `json:"clusterCIDRs,omitempty"`
	// AnnounceTo is "rack" (default) or "all".
	AnnounceTo string `json:"announceTo,omitempty"`
}

// Routes is the validated routes: section.
type Routes struct {
	// Enabled: the cloud offers Routes and every replica announces the
	// nodes' pod CIDRs.
	Enabled bool
	// ClusterCIDRs are the pod networks, at most one per family.
	ClusterCIDRs []netip.Prefix
	// AllRouters sends every pod CIDR to every router (announceTo: all).
	AllRouters bool
}

// Parse validates the section. A nil section is no routes.
func (r *RoutesFile) parse(path *field.Path) (Routes, field.ErrorList) {
	if r == nil {
		return Routes{}, nil
	}
	out := Routes{Enabled: r.Enabled == nil || *r.Enabled}
	var errs field.ErrorList
	switch r.AnnounceTo {
	case "", AnnounceToRack:
	case AnnounceToAll:
		out.AllRouters = true
	default:
		errs = append(errs, field.NotSupported(path.Child("announceTo"), r.AnnounceTo, []string{AnnounceToRack, AnnounceToAll}))
	}
	cp := path.Child("clusterCIDRs")
	if out.Enabled && len(r.ClusterCIDRs) == 0 {
		errs = append(errs, field.Required(cp, "the pod networks, as kube-controller-manager's --cluster-cidr (kubeadm: networking.podSubnet), for example [10.244.0.0/16, fd00:10:244::/56]"))
	}
	if len(r.ClusterCIDRs) > 2 {
		errs = append(errs, field.TooMany(cp, len(r.ClusterCIDRs), 2))
		return Routes{}, errs
	}
	seen := map[bool]int{} // is IPv4 -> index
	for i, s := range r.ClusterCIDRs {
		p, err := netip.ParsePrefix(s)
		ip := cp.Index(i)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(ip, s, "must be a CIDR such as 10.244.0.0/16 or fd00:10:244::/56"))
			continue
		case p != p.Masked():
			errs = append(errs, field.Invalid(ip, s, fmt.Sprintf("host bits are set: the network is %s", p.Masked())))
			continue
		case p.Addr().Is4() && p.Bits() < minClusterCIDRBits4, p.Addr().Is6() && p.Bits() < minClusterCIDRBits6:
			errs = append(errs, field.Invalid(ip, s, fmt.Sprintf("too large: at least /%d for IPv4 and /%d for IPv6, so that pod routes never cover the fabric", minClusterCIDRBits4, minClusterCIDRBits6)))
			continue
		}
		if j, dup := seen[p.Addr().Is4()]; dup {
			errs = append(errs, field.Invalid(ip, s, fmt.Sprintf("clusterCIDRs[%d] is of the same family: give at most one IPv4 and one IPv6 network", j)))
			continue
		}
		seen[p.Addr().Is4()] = i
		out.ClusterCIDRs = append(out.ClusterCIDRs, p)
	}
	return out, errs
}

// validateRoutePlacement refuses cluster CIDRs that overlap what the
// fabric already routes: the pools (VIPs), the racks' subnets and the
// machines' addresses (the nodes and their routers) and the BGP peers'
// addresses. A pod route there would
// take those addresses from their owners.
func validateRoutePlacement(cfg *Config, f *File) field.ErrorList {
	if f.Routes == nil {
		return nil
	}
	var errs field.ErrorList
	for i, c := range cfg.Routes.ClusterCIDRs {
		path := field.NewPath("routes", "clusterCIDRs").Index(i)
		bad := func(what string) {
			errs = append(errs, field.Invalid(path, c.String(), "overlaps "+what+": pod routes there would take those addresses"))
		}
		cr := netipx.RangeOfPrefix(c)
		for _, pool := range cfg.Pools {
			for _, r := range pool.Ranges {
				if r.Overlaps(cr) {
					bad(fmt.Sprintf("%s of pool %q", r, pool.Name))
				}
			}
		}
		for _, r := range cfg.Racks {
			for _, s := range r.Subnets {
				if s.Overlaps(c) {
					bad(fmt.Sprintf("subnet %s of rack %q", s, r.Name))
				}
			}
		}
		for _, m := range cfg.Machines {
			for _, a := range m.Addresses {
				if c.Contains(a) {
					bad(fmt.Sprintf("%s, an address of machine %q", a, m.Name))
				}
			}
		}
		for _, p := range cfg.BGP.Peers {
			if c.Contains(p.Address.WithZone("")) {
				bad(fmt.Sprintf("%s, the address of BGP peer %q", p.Address, p.Name))
			}
		}
	}
	if cfg.Routes.Enabled && (f.BGP == nil || f.BGP.ASN == 0) {
		errs = append(errs, field.Required(field.NewPath("bgp", "asn"), "routes are enabled, so the pod CIDRs must be announced: give the speaker's AS number"))
	}
	return errs
}
