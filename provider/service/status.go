package service

import (
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// StatusAddrs returns the addresses the Service's status shows
// (status.loadBalancer.ingress[].ip), in their order, each once. It is the
// only reading of a Service's status: the addresses clients use, which the
// allocator holds for the Service (see ipam.Request.Shown) and the
// announcer announces.
//
// An IPv4-mapped IPv6 address (::ffff:192.0.2.1) reads as the IPv4 address
// it maps: it is that address, and a router would carry it as such.
// Entries that are not IP addresses are skipped: a hostname entry is
// another implementation's, and the API server refuses anything else in
// ip. Addresses with a zone are skipped too: a zone names a link, and a
// load-balancer address is not link-local.
func StatusAddrs(svc *v1.Service) []netip.Addr {
	ingress := svc.Status.LoadBalancer.Ingress
	if len(ingress) == 0 {
		return nil
	}
	addrs := make([]netip.Addr, 0, len(ingress))
	// A status may be written by anyone allowed to: look each address up
	// once, not against every other.
	seen := make(map[netip.Addr]bool, len(ingress))
	for _, in := range ingress {
		a, err := netip.ParseAddr(strings.TrimSpace(in.IP))
		if err != nil || a.Zone() != "" {
			continue
		}
		a = a.Unmap()
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil
	}
	return addrs
}
