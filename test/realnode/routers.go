package realnode

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// HoldTime of the lab's BGP sessions, seconds.
const HoldTime = 9

// multihopTTL is the TTL of sessions between a ToR and a CCM replica in
// another rack: ToR, core, the other ToR, the node.
const multihopTTL = 4

// controlPlane returns the control-plane nodes: the CCM replicas.
func (c *Cluster) controlPlane() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.ControlPlane {
			out = append(out, n)
		}
	}
	return out
}

// TorConf is the ToR's FRR configuration: a session with every CCM
// replica, with TCP MD5 (GTSM for its own rack's replica, eBGP multihop
// for the others'; this rack's nodes are third-party next hops on its
// LAN), taking only the pool's and the pod network's prefixes from them
// and sending them nothing, ADD-PATH received (FRR's default) and up to
// 16 paths installed; and a session with the client, to which it
// announces the VIPs and its rack's pod CIDRs.
func (c *Cluster) TorConf(r *Rack) string {
	conf := fabric.BGPD{ASN: r.ASN, RouterID: r.Core, Keepalive: HoldTime / 3, Hold: HoldTime, MaximumPaths: 16,
		AcceptFromSpeakers: []netip.Prefix{PoolNet, PodNet}}
	for _, n := range c.controlPlane() {
		nb := fabric.BGPNeighbor{Addr: n.Addr, ASN: CCMASN, Comment: "baremetal-ccm replica on " + n.Name,
			Password: c.passwords[r.torName()], ConnectRetry: 1, Speaker: true}
		if n.Rack == r {
			nb.TTLSecurityHops = 1
		} else {
			nb.EBGPMultihop = multihopTTL
		}
		conf.Neighbors = append(conf.Neighbors, nb)
	}
	conf.Neighbors = append(conf.Neighbors, fabric.BGPNeighbor{Addr: clientCoreAddr, ASN: ClientASN, Comment: "the client (the spine)", ConnectRetry: 1})
	return conf.String()
}

// clientConf: the client learns the VIPs from every ToR and spreads over
// them (ECMP). It is also the fabric's spine for pod routes: what a ToR
// learns of its rack's pod CIDRs from the CCM, the client passes to the
// other ToRs (and nothing else).
func (c *Cluster) clientConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ip prefix-list PODS seq 5 permit %s le 32\n!\nroute-map PODS permit 10\n match ip address prefix-list PODS\n!\nrouter bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n bgp bestpath as-path multipath-relax\n timers bgp %d %d\n",
		PodNet, ClientASN, clientCoreAddr, HoldTime/3, HoldTime)
	for _, r := range c.Racks {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n", r.Core, r.ASN, r.Core)
	}
	b.WriteString(" address-family ipv4 unicast\n  maximum-paths 16\n")
	for _, r := range c.Racks {
		fmt.Fprintf(&b, "  neighbor %s route-map PODS out\n", r.Core)
	}
	b.WriteString(" exit-address-family\n")
	return b.String()
}

func randomPassword() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

func (c *Cluster) startRouters() error {
	c.passwords = map[string]string{}
	for _, r := range c.Racks {
		c.passwords[r.torName()] = randomPassword()
	}
	for _, r := range c.Racks {
		r.Configure(r.NS, filepath.Join(c.Opts.Dir, "frr", r.Name), c.TorConf(r))
		if err := r.StartFRR(); err != nil {
			return err
		}
	}
	dir := filepath.Join(c.Opts.Dir, "frr", "client")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := fabric.NewFRR(c.Client, dir, c.clientConf())
	c.ClientFRR = f
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}
