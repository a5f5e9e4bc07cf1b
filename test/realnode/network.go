package realnode

import (
	"context"
	"net/netip"
	"strconv"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// Rack is one rack: its ToR and its nodes.
type Rack struct {
	RackPlan
	Index int
	NS    *fabric.Namespace
	fabric.Router
	Core  netip.Addr // the ToR on the core LAN
	Nodes []*Node
}

// newNS creates a namespace of the lab with forwarding-friendly settings.
func (c *Cluster) newNS(ctx context.Context, suffix string) (*fabric.Namespace, error) {
	ns, err := fabric.CreateNamespace(ctx, c.Opts.Prefix+suffix)
	if err != nil {
		return ns, err
	}
	return ns, fabric.Sysctl(ctx, ns, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
}

// buildNetwork creates the core LAN (a bridge in its own namespace), the
// host's link to it, one ToR per rack with its rack LAN, the nodes' links
// and the client. Routes between racks are static on the ToRs (the fabric
// a data centre has); the VIPs are learnt over BGP.
func (c *Cluster) buildNetwork(ctx context.Context) error {
	var err error
	if c.lease, err = takeLease(c.Opts.Prefix, c.Opts.Dir, c.Opts.logf); err != nil {
		return err
	}
	if c.CoreNS, err = c.newNS(ctx, "core"); err != nil {
		return err
	}
	core := c.CoreNS
	if _, err := core.IP(ctx, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"); err != nil {
		return err
	}
	if _, err := core.IP(ctx, "link", "set", "br0", "up"); err != nil {
		return err
	}
	attach := func(ns *fabric.Namespace, port string, a netip.Addr) error {
		if err := fabric.CreateVeth(ctx, "core", ns, port, core); err != nil {
			return err
		}
		if _, err := core.IP(ctx, "link", "set", port, "master", "br0"); err != nil {
			return err
		}
		return fabric.AddAddress(ctx, ns, "core", a, CoreNet.Bits())
	}
	// The harness reaches the apiserver from the root namespace through
	// this link; its route goes when the link goes.
	hostLink := c.Opts.Prefix + "h"
	if err := fabric.CreateVeth(ctx, hostLink, fabric.Root, "host", core); err != nil {
		return err
	}
	if _, err := core.IP(ctx, "link", "set", "host", "master", "br0"); err != nil {
		return err
	}
	if err := fabric.AddAddress(ctx, fabric.Root, hostLink, HostAddr, CoreNet.Bits()); err != nil {
		return err
	}
	for i, rp := range Plan {
		r := &Rack{RackPlan: rp, Index: i, Core: torCoreAddr(i)}
		c.Racks = append(c.Racks, r)
		if r.NS, err = c.newNS(ctx, r.torName()); err != nil {
			return err
		}
		if err := fabric.Sysctl(ctx, r.NS, "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"); err != nil {
			return err
		}
		if err := attach(r.NS, "tor"+rp.letter(), r.Core); err != nil {
			return err
		}
		if _, err := r.NS.IP(ctx, "link", "add", "rack", "type", "bridge", "mcast_snooping", "0"); err != nil {
			return err
		}
		if _, err := r.NS.IP(ctx, "link", "set", "rack", "up"); err != nil {
			return err
		}
		if err := fabric.AddAddress(ctx, r.NS, "rack", gateway(rp), rp.Net.Bits()); err != nil {
			return err
		}
		for j, np := range rp.Nodes {
			n := &Node{NodePlan: np, Rack: r, Addr: nodeAddr(rp, j), cluster: c}
			r.Nodes = append(r.Nodes, n)
			c.Nodes = append(c.Nodes, n)
			if n.NS, err = c.newNS(ctx, np.Name); err != nil {
				return err
			}
			if err := fabric.Sysctl(ctx, n.NS, "net.ipv4.ip_forward=1"); err != nil {
				return err
			}
			port := "n" + strconv.Itoa(j+1)
			if err := fabric.CreateVeth(ctx, "eth0", n.NS, port, r.NS); err != nil {
				return err
			}
			if _, err := r.NS.IP(ctx, "link", "set", port, "master", "rack"); err != nil {
				return err
			}
			if err := fabric.AddAddress(ctx, n.NS, "eth0", n.Addr, rp.Net.Bits()); err != nil {
				return err
			}
			if _, err := n.NS.IP(ctx, "route", "add", "default", "via", gateway(rp).String()); err != nil {
				return err
			}
		}
	}
	// The harness reaches the apiserver at controlPlaneEndpoint, and only
	// that, from the root namespace: one host route, so that the lab's
	// racks never shadow addresses other tests put in the root namespace.
	first := c.Nodes[0]
	if _, err := fabric.Root.IP(ctx, "route", "add", first.Addr.String()+"/32", "via", first.Rack.Core.String(), "dev", hostLink); err != nil {
		return err
	}
	// Every ToR reaches the other racks through their ToRs.
	for _, r := range c.Racks {
		for _, o := range c.Racks {
			if o == r {
				continue
			}
			if _, err := r.NS.IP(ctx, "route", "add", o.Net.String(), "via", o.Core.String()); err != nil {
				return err
			}
		}
	}
	if c.Client, err = c.newNS(ctx, "client"); err != nil {
		return err
	}
	// The client is also the spine that carries pod routes between racks.
	if err := fabric.Sysctl(ctx, c.Client, "net.ipv4.fib_multipath_hash_policy=1", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	return attach(c.Client, "client", clientCoreAddr)
}

// PodRoutes returns the ToR's kernel next hops for podCIDR and the
// protocol that installed the route ("bgp" when learnt from the CCM or
// the spine).
func (r *Rack) PodRoutes(ctx context.Context, podCIDR netip.Prefix) ([]netip.Addr, string, error) {
	routes, err := fabric.Routes(ctx, r.NS, podCIDR)
	if err != nil || len(routes) == 0 {
		return nil, "", err
	}
	return routes[0].Gateways(), routes[0].Protocol, nil
}
