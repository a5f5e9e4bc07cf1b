package realnode

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// The tester is where Kubernetes' e2e tests run from (docs/conformance.md):
// e2e.test talks to the apiserver and, in most LoadBalancer tests, to the
// VIPs itself, so it needs both, and it must reach the VIPs as a client
// outside the cluster does, through the fabric. It is a namespace on the
// core LAN whose every packet leaves from TesterAddr.

// TesterAddr is the tester's source address. Outside the nodes' /16
// (198.51.0.0/16): the ESIPP test takes a node's InternalIP masked to /16
// as "inside the cluster" and would call the client's preserved address
// unpreserved were it in there, as the lab client's 198.51.100.229 is. Not
// in the VIP pool (203.0.113.0/26) nor among the ClusterIPs
// (203.0.113.192/26).
var TesterAddr = netip.MustParseAddr("203.0.113.100")

// testerCoreAddr is the tester's address on the core LAN, after the client.
var testerCoreAddr = coreAddr(2 + len(Plan))

// TesterNamespace is the name of the tester's network namespace for a lab
// with prefix.
func TesterNamespace(prefix string) string { return prefix + "tester" }

// buildTester creates the tester: a namespace on the core LAN with
// TesterAddr on lo; the VIP pool via the client, which spreads over the
// ToRs as it does for its own requests (ECMP); each rack's LAN (the
// apiservers, the nodes) via its ToR; every route with TesterAddr as the
// source. The ToRs route TesterAddr back to it; the client, forwarding
// out the link a packet came in on, would send ICMP redirects that would
// make the tester bypass it, so the tester ignores them.
func (c *Cluster) buildTester(ctx context.Context) error {
	ns, err := c.newNS(ctx, "tester")
	if err != nil {
		return err
	}
	c.Tester = ns
	if err := fabric.Sysctl(ctx, ns, "net.ipv4.conf.all.accept_redirects=0", "net.ipv4.conf.default.accept_redirects=0"); err != nil {
		return err
	}
	const port = "tester"
	if err := fabric.CreateVeth(ctx, "core", ns, port, c.CoreNS); err != nil {
		return err
	}
	if _, err := c.CoreNS.IP(ctx, "link", "set", port, "master", "br0"); err != nil {
		return err
	}
	if err := fabric.AddAddress(ctx, ns, "core", testerCoreAddr, CoreNet.Bits()); err != nil {
		return err
	}
	if err := fabric.AddAddress(ctx, ns, "lo", TesterAddr, 32); err != nil {
		return err
	}
	src := TesterAddr.String()
	if _, err := ns.IP(ctx, "route", "add", PoolNet.String(), "via", clientCoreAddr.String(), "src", src); err != nil {
		return fmt.Errorf("tester: %w", err)
	}
	for _, r := range c.Racks {
		if _, err := ns.IP(ctx, "route", "add", r.Net.String(), "via", r.Core.String(), "src", src); err != nil {
			return fmt.Errorf("tester: %w", err)
		}
		if _, err := r.NS.IP(ctx, "route", "add", src+"/32", "via", testerCoreAddr.String()); err != nil {
			return fmt.Errorf("%s: route to the tester: %w", r.torName(), err)
		}
	}
	return nil
}
