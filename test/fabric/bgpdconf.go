package fabric

import (
	"fmt"
	"net/netip"
	"strings"
)

// BGPD is the bgpd.conf of an FRR router: what the lab's ToRs and client
// and the rack-peering test's ToRs run. docs/ shows the text it renders
// for those, and test/docs checks that the two are the same.
type BGPD struct {
	ASN      int
	RouterID netip.Addr
	// Keepalive and Hold are `timers bgp`, in seconds; zero: FRR's.
	Keepalive, Hold int
	// MaximumPaths is the ECMP width per family; zero: FRR's (1 path).
	MaximumPaths int
	// MultipathRelax lets paths through different neighbouring ASes be
	// equal (bgp bestpath as-path multipath-relax).
	MultipathRelax bool
	// AcceptFromSpeakers, when set, are the only prefixes taken from the
	// neighbors marked Speaker (the address pools, le 32 / le 128): a
	// route-map in, on top of the speaker's own export policy.
	AcceptFromSpeakers []netip.Prefix
	Neighbors          []BGPNeighbor
}

// BGPNeighbor is one neighbor of a BGPD.
type BGPNeighbor struct {
	Addr netip.Addr
	ASN  int
	// Comment is written as an FRR comment line above the neighbor.
	Comment string
	// EBGPMultihop is the TTL of a session with a neighbor that is not
	// directly connected; zero: directly connected.
	EBGPMultihop int
	// TTLSecurityHops enables GTSM (ttl-security hops N).
	TTLSecurityHops int
	Password        string
	// ConnectRetry is `timers connect`, seconds; zero: FRR's.
	ConnectRetry int
	// IPv6 activates the IPv6 unicast family on the session (IPv4
	// unicast is on unless NoIPv4).
	IPv6, NoIPv4 bool
	// Speaker marks a baremetal-ccm replica: AcceptFromSpeakers filters
	// what it sends, and nothing is sent to it (it takes nothing).
	Speaker bool
	// SendNothing: no route is advertised to the neighbor.
	SendNothing bool
}

// Prefix-list and route-map names of the rendered configuration.
const (
	bgpdDeny       = "NONE"
	bgpdAccept4    = "BMCCM-VIPS"
	bgpdAccept6    = "BMCCM-VIPS6"
	bgpdSpeakersIn = "BMCCM-IN"
)

func (c BGPD) filtersSpeakers() bool { return len(c.AcceptFromSpeakers) > 0 }

// policiesEverywhere tells whether every neighbor has a route-map in and
// out, as FRR's bgp ebgp-requires-policy (on by default) asks.
func (c BGPD) policiesEverywhere() bool {
	for _, n := range c.Neighbors {
		if !n.Speaker || !c.filtersSpeakers() {
			return false
		}
	}
	return len(c.Neighbors) > 0
}

// String renders the configuration.
func (c BGPD) String() string {
	var b strings.Builder
	c.writePolicies(&b)
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n", c.ASN, c.RouterID)
	if !c.policiesEverywhere() {
		// FRR refuses routes to and from an eBGP neighbor without
		// policies in both directions unless told not to.
		b.WriteString(" no bgp ebgp-requires-policy\n")
	}
	b.WriteString(" no bgp network import-check\n")
	if c.MultipathRelax {
		b.WriteString(" bgp bestpath as-path multipath-relax\n")
	}
	if c.Keepalive > 0 || c.Hold > 0 {
		fmt.Fprintf(&b, " timers bgp %d %d\n", c.Keepalive, c.Hold)
	}
	for _, n := range c.Neighbors {
		if n.Comment != "" {
			fmt.Fprintf(&b, " ! %s\n", n.Comment)
		}
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n", n.Addr, n.ASN)
		if n.EBGPMultihop > 0 {
			fmt.Fprintf(&b, " neighbor %s ebgp-multihop %d\n", n.Addr, n.EBGPMultihop)
		}
		if n.TTLSecurityHops > 0 {
			fmt.Fprintf(&b, " neighbor %s ttl-security hops %d\n", n.Addr, n.TTLSecurityHops)
		}
		if n.Password != "" {
			fmt.Fprintf(&b, " neighbor %s password %s\n", n.Addr, n.Password)
		}
		if n.ConnectRetry > 0 {
			fmt.Fprintf(&b, " neighbor %s timers connect %d\n", n.Addr, n.ConnectRetry)
		}
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n", fam)
		if c.MaximumPaths > 0 {
			fmt.Fprintf(&b, "  maximum-paths %d\n", c.MaximumPaths)
		}
		for _, n := range c.Neighbors {
			c.writeFamily(&b, fam, n)
		}
		b.WriteString(" exit-address-family\n")
	}
	return b.String()
}

// writePolicies writes the prefix lists and route-maps the neighbors use.
func (c BGPD) writePolicies(b *strings.Builder) {
	deny := false
	for _, n := range c.Neighbors {
		deny = deny || n.SendNothing || (n.Speaker && c.filtersSpeakers())
	}
	if c.filtersSpeakers() {
		seq := map[bool]int{}
		for _, p := range c.AcceptFromSpeakers {
			list, kw, max := bgpdAccept4, "ip", 32
			if p.Addr().Is6() {
				list, kw, max = bgpdAccept6, "ipv6", 128
			}
			seq[p.Addr().Is6()] += 5
			fmt.Fprintf(b, "%s prefix-list %s seq %d permit %s le %d\n", kw, list, seq[p.Addr().Is6()], p.Masked(), max)
		}
		if seq[false] > 0 {
			fmt.Fprintf(b, "route-map %s permit 10\n match ip address prefix-list %s\n", bgpdSpeakersIn, bgpdAccept4)
		}
		if seq[true] > 0 {
			fmt.Fprintf(b, "route-map %s permit 20\n match ipv6 address prefix-list %s\n", bgpdSpeakersIn, bgpdAccept6)
		}
	}
	if deny {
		fmt.Fprintf(b, "route-map %s deny 10\n", bgpdDeny)
	}
	if deny || c.filtersSpeakers() {
		b.WriteString("!\n")
	}
}

// writeFamily writes a neighbor's lines of one address family.
func (c BGPD) writeFamily(b *strings.Builder, fam string, n BGPNeighbor) {
	on := (fam == "ipv4" && !n.NoIPv4) || (fam == "ipv6" && n.IPv6)
	switch {
	case fam == "ipv4" && !on:
		fmt.Fprintf(b, "  no neighbor %s activate\n", n.Addr)
		return
	case !on:
		return
	case fam == "ipv6":
		fmt.Fprintf(b, "  neighbor %s activate\n", n.Addr)
	}
	if n.Speaker && c.filtersSpeakers() {
		fmt.Fprintf(b, "  neighbor %s route-map %s in\n", n.Addr, bgpdSpeakersIn)
	}
	if n.SendNothing || (n.Speaker && c.filtersSpeakers()) {
		fmt.Fprintf(b, "  neighbor %s route-map %s out\n", n.Addr, bgpdDeny)
	}
}
