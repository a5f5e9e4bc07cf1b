// Package rackpeering is the fabric of the rack-aware peering test: three
// racks, each with a ToR (FRR for racks a and c, BIRD for rack b),
// control-plane nodes (baremetal-ccm replicas) in racks a and b only, and
// a core LAN between the ToRs. Each
// ToR hears from two replicas: directly connected where the replica is in
// its rack, over eBGP multihop otherwise (rack c has no replica at all).
// The ToRs' bgpd.conf and bird.conf and the replicas' cloud config are
// defined here, once: the test runs them, and docs/router-configuration.md
// shows them (test/docs checks that it shows this text).
package rackpeering

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// CCMASN is the replicas' AS.
const CCMASN = 64512

// Pool is the VIPs' address pool.
var Pool = netip.MustParsePrefix("203.0.113.0/28")

// Rack is one rack of the topology.
type Rack struct {
	Name string // rack-a
	ASN  int
	// Subnet is the rack's LAN; the ToR has its first address.
	Subnet netip.Prefix
	ToR    netip.Addr
	// Core is the ToR's address on the core LAN.
	Core netip.Addr
	// Replica is the address of the rack's control-plane node, which runs
	// a replica; invalid for a rack without one.
	Replica netip.Addr
	// Workers are the addresses of the rack's other nodes (Node objects
	// only: the ToR's LAN holds them, nothing answers there).
	Workers []netip.Addr
	// BIRD: the ToR runs BIRD 2 (ToRBIRD), not FRR (ToRBGPD).
	BIRD bool
}

// Racks are the racks a, b and c.
var Racks = []Rack{
	{Name: "rack-a", ASN: 64601, Subnet: netip.MustParsePrefix("198.51.100.0/26"), ToR: netip.MustParseAddr("198.51.100.1"),
		Core: netip.MustParseAddr("192.0.2.1"), Replica: netip.MustParseAddr("198.51.100.11")},
	{Name: "rack-b", ASN: 64602, Subnet: netip.MustParsePrefix("198.51.100.64/26"), ToR: netip.MustParseAddr("198.51.100.65"),
		Core: netip.MustParseAddr("192.0.2.2"), Replica: netip.MustParseAddr("198.51.100.75"),
		Workers: []netip.Addr{netip.MustParseAddr("198.51.100.80")}, BIRD: true},
	{Name: "rack-c", ASN: 64603, Subnet: netip.MustParsePrefix("198.51.100.128/26"), ToR: netip.MustParseAddr("198.51.100.129"),
		Core:    netip.MustParseAddr("192.0.2.3"),
		Workers: []netip.Addr{netip.MustParseAddr("198.51.100.140"), netip.MustParseAddr("198.51.100.141")}},
}

// CoreLAN is the ToRs' shared LAN.
var CoreLAN = netip.MustParsePrefix("192.0.2.0/28")

// replicaHops is the TTL a replica needs to reach the ToR of another
// rack: its own ToR forwards the packets once.
const replicaHops = 2

// ToRBGPD is the bgpd.conf of rack r's ToR: a session with every replica,
// GTSM-protected for the one in its own rack, eBGP multihop for those in
// other racks; only the pool's VIPs are taken from them, nothing is sent
// to them, and up to 16 of their paths make an ECMP route.
func ToRBGPD(r Rack) fabric.BGPD {
	c := fabric.BGPD{ASN: r.ASN, RouterID: r.ToR, Keepalive: 3, Hold: 9, MaximumPaths: 16, AcceptFromSpeakers: []netip.Prefix{Pool}}
	for _, o := range Racks {
		if !o.Replica.IsValid() {
			continue
		}
		n := fabric.BGPNeighbor{Addr: o.Replica, ASN: CCMASN, Speaker: true}
		if o.Name == r.Name {
			n.TTLSecurityHops = 1
			n.Comment = "baremetal-ccm replica of this rack: directly connected, GTSM"
		} else {
			n.EBGPMultihop = replicaHops
			n.Comment = fmt.Sprintf("baremetal-ccm replica of %s: eBGP multihop through its ToR", o.Name)
		}
		c.Neighbors = append(c.Neighbors, n)
	}
	return c
}

// ToRBIRD is the bird.conf of rack r's ToR, the same sessions as ToRBGPD
// in BIRD's terms.
func ToRBIRD(r Rack) fabric.BIRDConf {
	c := fabric.BIRDConf{ASN: r.ASN, RouterID: r.ToR, Keepalive: 3, Hold: 9, MaximumPaths: 16, Accept: []netip.Prefix{Pool}}
	for _, o := range Racks {
		if !o.Replica.IsValid() {
			continue
		}
		n := fabric.BIRDNeighbor{Name: BIRDProtocol(o), Addr: o.Replica, ASN: CCMASN}
		if o.Name == r.Name {
			n.TTLSecurity = true
			n.Comment = "baremetal-ccm replica of this rack: directly connected, GTSM"
		} else {
			n.Multihop, n.Source = replicaHops, r.ToR
			n.Comment = fmt.Sprintf("baremetal-ccm replica of %s: eBGP multihop through its ToR", o.Name)
		}
		c.Neighbors = append(c.Neighbors, n)
	}
	return c
}

// BIRDProtocol is the name of the BGP protocol of replica rack o's
// session in a BIRD ToR.
func BIRDProtocol(o Rack) string { return "ccm_" + strings.ReplaceAll(o.Name, "-", "_") }

// CloudConfig is the replicas' cloud config: the racks, the pool, and for
// each ToR the replicas that peer with it (dialFrom), with the same
// settings as its bgpd.conf.
func CloudConfig() string {
	var b strings.Builder
	b.WriteString("region: lab\nracks:\n")
	for _, r := range Racks {
		fmt.Fprintf(&b, "- name: %s\n  subnets: [%s]\n", r.Name, r.Subnet)
	}
	fmt.Fprintf(&b, "pools:\n- name: public\n  addresses: [%s]\n  avoidBuggyIPs: true\n", Pool)
	fmt.Fprintf(&b, "bgp:\n  asn: %d\n  peers:\n", CCMASN)
	for _, r := range Racks {
		var near, far []string
		for _, o := range Racks {
			switch {
			case !o.Replica.IsValid():
			case o.Name == r.Name:
				near = append(near, o.Name)
			default:
				far = append(far, o.Name)
			}
		}
		short := strings.TrimPrefix(r.Name, "rack-")
		peer := func(name string, racks []string, transport string) {
			fmt.Fprintf(&b, "  - name: %s\n    address: %s\n    asn: %d\n    rack: %s\n    dialFrom: {racks: [%s]}\n    %s\n",
				name, r.ToR, r.ASN, r.Name, strings.Join(racks, ", "), transport)
		}
		if len(near) > 0 {
			peer("tor-"+short, near, "ttlSecurity: 1")
		}
		if len(far) > 0 {
			name := "tor-" + short + "-far"
			if len(near) == 0 {
				name = "tor-" + short
			}
			peer(name, far, fmt.Sprintf("ebgpMultihop: %d", replicaHops))
		}
	}
	b.WriteString("healthCheck:\n  enabled: false\n")
	return b.String()
}
