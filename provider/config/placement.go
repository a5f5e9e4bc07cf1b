package config

import (
	"fmt"
	"net/netip"

	"go4.org/netipx"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/baremetal-ccm/baremetal-ccm/ipam"
)

// validatePoolPlacement refuses pool addresses that belong to the network
// the pools are announced over: a range overlapping a rack's node subnet
// (the addresses of nodes and of the rack's router), or holding a BGP
// peer's address. Entries that do not parse are the sections' own
// problems, reported there; the rest are checked, so that every problem is
// reported at once.
func validatePoolPlacement(f *File) field.ErrorList {
	type subnet struct {
		prefix netip.Prefix
		rack   string
		path   *field.Path
	}
	var subnets []subnet
	for i, r := range f.Racks {
		for j, s := range r.Subnets {
			if p, err := netip.ParsePrefix(s); err == nil && p == p.Masked() {
				subnets = append(subnets, subnet{p, r.Name, field.NewPath("racks").Index(i).Child("subnets").Index(j)})
			}
		}
	}
	type peer struct {
		addr netip.Addr
		name string
		path *field.Path
	}
	var peers []peer
	if f.BGP != nil {
		for i, p := range f.BGP.Peers {
			if a, err := netip.ParseAddr(p.Address); err == nil {
				peers = append(peers, peer{a.WithZone("").Unmap(), p.Name, field.NewPath("bgp", "peers").Index(i).Child("address")})
			}
		}
	}

	var errs field.ErrorList
	for i, pool := range f.Pools {
		for j, s := range pool.Addresses {
			r, err := ipam.ParseRange(s)
			if err != nil {
				continue
			}
			path := field.NewPath("pools").Index(i).Child("addresses").Index(j)
			for _, sn := range subnets {
				if netipx.RangeOfPrefix(sn.prefix).Overlaps(r) {
					errs = append(errs, field.Invalid(path, s, fmt.Sprintf(
						"overlaps subnet %s of rack %q (%s): the nodes and their router have those addresses; take pool addresses from a block the racks do not use",
						sn.prefix, sn.rack, sn.path)))
				}
			}
			for _, p := range peers {
				if r.Contains(p.addr) {
					errs = append(errs, field.Invalid(path, s, fmt.Sprintf(
						"contains %s, the address of BGP peer %q (%s): a router's own address cannot be a Service's", p.addr, p.name, p.path)))
				}
			}
		}
	}
	return errs
}
