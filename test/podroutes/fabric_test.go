package podroutes

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go4.org/netipx"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// The fabric: a core LAN joining two ToRs (FRR, eBGP with each other, as
// a spine would join them) and two CCM replicas; behind each ToR a rack
// LAN with its nodes. Documentation ranges only, inside namespaces.
const (
	ccmASN = 64512
	// Pod networks: a /30 and a /64 per node.
	cluster4 = "203.0.113.0/24"
	cluster6 = "2001:db8:100::/56"
)

var (
	core4Net = netip.MustParsePrefix("192.0.2.240/28")
	core6Net = netip.MustParsePrefix("2001:db8:ff::/64")
)

type rack struct {
	name       string
	routes     *routeReader
	asn        int
	ns         *fabric.Namespace
	frr        *fabric.FRR
	core4      netip.Addr
	core6      netip.Addr
	net4, net6 netip.Prefix
	nodes      int // nodes with a namespace, for the port names
}

// node is a Node object; with ns, also a machine in the rack whose
// loopback holds addresses of its pod CIDRs, standing for pods.
type node struct {
	name         string
	rack         *rack
	ns           *fabric.Namespace
	addr4, addr6 netip.Addr
	pod4, pod6   netip.Prefix
}

// podAddr4 and podAddr6 are the node's "pod": the first address of each
// pod CIDR.
func (n *node) podAddr4() netip.Addr { return n.pod4.Addr().Next() }
func (n *node) podAddr6() netip.Addr { return n.pod6.Addr().Next() }

type replica struct {
	name       string
	ns         *fabric.Namespace
	addr4      netip.Addr
	kubeconfig string
	proc       *ccm.Process
}

type env struct {
	t           *testing.T
	cp          *controlplane.ControlPlane
	core        *fabric.Namespace
	racks       []*rack
	replicas    []*replica
	cloudConfig string
}

func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	return a
}

func mustIP(t *testing.T, ns *fabric.Namespace, args ...string) {
	t.Helper()
	if _, err := ns.IP(context.Background(), args...); err != nil {
		t.Fatal(err)
	}
}

// buildFabric creates the namespaces, links and routers.
func buildFabric(t *testing.T, prefix string, cp *controlplane.ControlPlane) *env {
	t.Helper()
	e := &env{t: t, cp: cp}
	e.core = fabric.NewNamespace(t, prefix+"core")
	mustIP(t, e.core, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	mustIP(t, e.core, "link", "set", "br0", "up")
	attach := func(ns *fabric.Namespace, port string, host int) {
		fabric.Veth(t, "core", ns, port, e.core)
		mustIP(t, e.core, "link", "set", port, "master", "br0")
		fabric.AddAddr(t, ns, "core", netip.PrefixFrom(nth(core4Net, host), core4Net.Bits()))
		fabric.AddAddr(t, ns, "core", netip.PrefixFrom(nth(core6Net, host), core6Net.Bits()))
	}
	for i, spec := range []struct {
		name       string
		asn        int
		net4, net6 string
	}{{"rack-a", 65001, "192.0.2.0/26", "2001:db8:a::/64"}, {"rack-b", 65002, "192.0.2.64/26", "2001:db8:b::/64"}} {
		letter := string(rune('a' + i))
		r := &rack{name: spec.name, asn: spec.asn, net4: netip.MustParsePrefix(spec.net4), net6: netip.MustParsePrefix(spec.net6),
			core4: nth(core4Net, 1+i), core6: nth(core6Net, 1+i)}
		r.ns = fabric.NewNamespace(t, prefix+"tor"+letter)
		r.routes = newRouteReader(t, r.ns)
		if _, err := r.ns.Exec(context.Background(), "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"); err != nil {
			t.Fatal(err)
		}
		attach(r.ns, "tor"+letter, 1+i)
		mustIP(t, r.ns, "link", "add", "rack", "type", "bridge", "mcast_snooping", "0")
		mustIP(t, r.ns, "link", "set", "rack", "up")
		fabric.AddAddr(t, r.ns, "rack", netip.PrefixFrom(nth(r.net4, 1), r.net4.Bits()))
		fabric.AddAddr(t, r.ns, "rack", netip.PrefixFrom(nth(r.net6, 1), r.net6.Bits()))
		e.racks = append(e.racks, r)
	}
	for i := range 2 {
		c := &replica{name: fmt.Sprintf("ccm-%d", i+1), addr4: nth(core4Net, 3+i)}
		c.ns = fabric.NewNamespace(t, fmt.Sprintf("%scp%d", prefix, i+1))
		attach(c.ns, fmt.Sprintf("cp%d", i+1), 3+i)
		c.kubeconfig = e.kubeconfigIn(c.ns)
		e.replicas = append(e.replicas, c)
	}
	for _, r := range e.racks {
		r.frr = fabric.StartFRR(t, r.ns, t.TempDir(), e.torConf(r))
	}
	return e
}

// kubeconfigIn writes an admin kubeconfig that reaches the apiserver from
// inside ns.
func (e *env) kubeconfigIn(ns *fabric.Namespace) string {
	t := e.t
	u, err := url.Parse(e.cp.URL)
	if err != nil {
		t.Fatal(err)
	}
	addr := fabric.ForwardInto(t, ns, u.Host)
	cfg, err := clientcmd.LoadFromFile(e.cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + addr
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// torConf: eBGP with both replicas and with the other ToR (one session
// per family); the CCMs' IPv6 routes ride their IPv4 sessions. No route
// is configured statically: everything a ToR knows of the pod networks it
// learns over BGP.
func (e *env) torConf(r *rack) string {
	other := e.racks[0]
	if other == r {
		other = e.racks[1]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp network import-check\n timers bgp 3 9\n", r.asn, r.core4)
	for _, c := range e.replicas {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n neighbor %s advertisement-interval 0\n", c.addr4, ccmASN, c.addr4, c.addr4)
	}
	for _, a := range []netip.Addr{other.core4, other.core6} {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n neighbor %s advertisement-interval 0\n", a, other.asn, a, a)
	}
	fmt.Fprintf(&b, " address-family ipv4 unicast\n  no neighbor %s activate\n exit-address-family\n", other.core6)
	b.WriteString(" address-family ipv6 unicast\n")
	for _, c := range e.replicas {
		fmt.Fprintf(&b, "  neighbor %s activate\n", c.addr4)
	}
	fmt.Fprintf(&b, "  neighbor %s activate\n exit-address-family\n", other.core6)
	return b.String()
}

// addMachine adds a node with a namespace of its own in r: an address in
// each of the rack's subnets, a default route to the ToR, and its pods'
// addresses on its loopback. The Node object is the caller's.
func (e *env) addMachine(prefix string, n *node) {
	t := e.t
	r := n.rack
	r.nodes++
	n.ns = fabric.NewNamespace(t, prefix+n.name)
	port := fmt.Sprintf("n%d", r.nodes)
	fabric.Veth(t, "eth0", n.ns, port, r.ns)
	mustIP(t, r.ns, "link", "set", port, "master", "rack")
	fabric.AddAddr(t, n.ns, "eth0", netip.PrefixFrom(n.addr4, r.net4.Bits()))
	fabric.AddAddr(t, n.ns, "eth0", netip.PrefixFrom(n.addr6, r.net6.Bits()))
	mustIP(t, n.ns, "route", "add", "default", "via", nth(r.net4, 1).String())
	mustIP(t, n.ns, "-6", "route", "add", "default", "via", nth(r.net6, 1).String())
	fabric.AddAddr(t, n.ns, "lo", netip.PrefixFrom(n.podAddr4(), 32))
	fabric.AddAddr(t, n.ns, "lo", netip.PrefixFrom(n.podAddr6(), 128))
}

// cloudConfig is the replicas' cloud config: routes on, to each rack's
// ToR.
func (e *env) cloudConfigText() string {
	var b strings.Builder
	b.WriteString("region: lab\nracks:\n")
	for _, r := range e.racks {
		fmt.Fprintf(&b, "- name: %s\n  subnets: [%s, %s]\n", r.name, r.net4, r.net6)
	}
	fmt.Fprintf(&b, "bgp:\n  asn: %d\n  listenPort: 179\n  peers:\n", ccmASN)
	for _, r := range e.racks {
		fmt.Fprintf(&b, "  - name: tor-%s\n    address: %s\n    asn: %d\n    rack: %s\n", strings.TrimPrefix(r.name, "rack-"), r.core4, r.asn, r.name)
	}
	fmt.Fprintf(&b, "routes:\n  clusterCIDRs: [%s, %s]\nhealthCheck:\n  enabled: false\n", cluster4, cluster6)
	return b.String()
}

// start starts (again) the replica.
func (e *env) start(c *replica) {
	c.proc = ccm.Start(e.t, ccm.Options{
		Kubeconfig:  c.kubeconfig,
		CloudConfig: e.cloudConfig,
		Wrap:        []string{"ip", "netns", "exec", c.ns.Name},
		Args: []string{
			"--leader-elect=true", "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms",
			"--bgp-router-id=" + c.addr4.String(),
			"--route-reconciliation-period=2s",
		},
	})
}

// routeReader reads a ToR's kernel routes over netlink, in its namespace:
// a read costs about a millisecond, where running ip costs tens under
// load, so that the restart test can sample every 100 ms.
type routeReader struct{ h *netlink.Handle }

func newRouteReader(t *testing.T, ns *fabric.Namespace) *routeReader {
	t.Helper()
	nsh, err := netns.GetFromPath("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatalf("netlink in %s: %v", ns, err)
	}
	t.Cleanup(h.Close)
	return &routeReader{h: h}
}

// bgpRoutes returns the BGP routes of the main table: each destination
// with its gateways (an on-link IPv6 next hop may be a link-local
// address).
func (r *routeReader) bgpRoutes() (map[netip.Prefix][]netip.Addr, error) {
	out := map[netip.Prefix][]netip.Addr{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := r.h.RouteListFiltered(fam, &netlink.Route{Protocol: unix.RTPROT_BGP}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			return nil, err
		}
		for _, rt := range routes {
			if rt.Dst == nil {
				continue
			}
			p, ok := netipx.FromStdIPNet(rt.Dst)
			if !ok {
				continue
			}
			var gws []netip.Addr
			if a, ok := netip.AddrFromSlice(rt.Gw); ok {
				gws = append(gws, a.Unmap())
			}
			for _, nh := range rt.MultiPath {
				if a, ok := netip.AddrFromSlice(nh.Gw); ok {
					gws = append(gws, a.Unmap())
				}
			}
			out[p] = gws
		}
	}
	return out, nil
}
