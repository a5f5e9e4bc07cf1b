package fabric

import (
	"fmt"
	"net/netip"
	"strings"
)

// BIRDConf is the bird.conf (BIRD 2) of a ToR that takes baremetal-ccm
// replicas' VIPs: what the rack-peering test's BIRD ToR runs, and what
// docs/router-configuration.md shows (test/docs checks that it is the
// same text). IPv4 only.
type BIRDConf struct {
	ASN      int
	RouterID netip.Addr
	// Keepalive and Hold are the sessions' timers, in seconds; zero:
	// BIRD's.
	Keepalive, Hold int
	// Accept are the only prefixes taken from the replicas (the address
	// pools), any length down to /32.
	Accept []netip.Prefix
	// MaximumPaths merges up to this many equal paths into one kernel
	// route (ECMP).
	MaximumPaths int
	Neighbors    []BIRDNeighbor
}

// BIRDNeighbor is one replica.
type BIRDNeighbor struct {
	// Name is the BGP protocol's name in BIRD.
	Name string
	Addr netip.Addr
	ASN  int
	// Comment is written above the protocol.
	Comment string
	// Multihop is the hop count of a session with a replica that is not
	// directly connected (BIRD counts the networks in between: one
	// router between is 2); zero: directly connected.
	Multihop int
	// TTLSecurity enables GTSM for a directly connected replica.
	TTLSecurity bool
	// Source is the address the session uses here (BIRD's local
	// address): the one the replica dials. Needed for multihop.
	Source netip.Addr
}

// String renders the configuration.
func (c BIRDConf) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\n\n", c.RouterID)
	b.WriteString("# Interface routes: the rack's LAN, where the replicas' next hops (the\n# nodes) are, for the sessions whose next hops are resolved recursively.\n")
	b.WriteString("protocol device {}\nprotocol direct { ipv4; }\n\n")
	fmt.Fprintf(&b, "# Equal paths of the replicas become one ECMP route in the kernel.\nprotocol kernel {\n  ipv4 { export where source = RTS_BGP; };\n  merge paths on limit %d;\n}\n\n", c.MaximumPaths)
	var nets []string
	for _, p := range c.Accept {
		nets = append(nets, fmt.Sprintf("%s{%d,%d}", p.Masked(), p.Bits(), p.Addr().BitLen()))
	}
	fmt.Fprintf(&b, "# Only the address pools' VIPs are taken from the replicas.\nfilter bmccm_vips {\n  if net ~ [ %s ] then accept;\n  reject;\n}\n\n", strings.Join(nets, ", "))
	b.WriteString("# A replica: ADD-PATH receive (one path per node), nothing sent to it.\ntemplate bgp bmccm {\n")
	if c.Hold > 0 {
		fmt.Fprintf(&b, "  hold time %d;\n", c.Hold)
	}
	if c.Keepalive > 0 {
		fmt.Fprintf(&b, "  keepalive time %d;\n", c.Keepalive)
	}
	b.WriteString("  ipv4 {\n    import filter bmccm_vips;\n    export none;\n    add paths rx;\n  };\n}\n")
	for _, n := range c.Neighbors {
		b.WriteString("\n")
		if n.Comment != "" {
			fmt.Fprintf(&b, "# %s\n", n.Comment)
		}
		fmt.Fprintf(&b, "protocol bgp %s from bmccm {\n", n.Name)
		if n.Source.IsValid() {
			fmt.Fprintf(&b, "  local %s as %d;\n", n.Source, c.ASN)
		} else {
			fmt.Fprintf(&b, "  local as %d;\n", c.ASN)
		}
		fmt.Fprintf(&b, "  neighbor %s as %d;\n", n.Addr, n.ASN)
		if n.Multihop > 0 {
			fmt.Fprintf(&b, "  multihop %d;\n", n.Multihop)
		}
		if n.TTLSecurity {
			b.WriteString("  ttl security on;\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}
