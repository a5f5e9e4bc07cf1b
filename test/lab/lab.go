// Package lab builds the baremetal-ccm lab: a two-rack fabric of network
// namespaces with FRR top-of-rack routers, machine agents standing in for
// kubelet and kube-proxy, a client routed to the VIPs through the ToRs,
// the real control plane (etcd + kube-apiserver) and two CCM replicas with
// leader election. hack/lab (up, down, status), hack/demo.sh and the
// end-to-end tests (test/e2e) all build it with [Up]. See docs/lab.md.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
	"github.com/baremetal-ccm/baremetal-ccm/test/proc"
)

// Autonomous systems of the lab.
const (
	CCMASN    = 64512
	ClientASN = 65100
)

// Options configure [Up].
type Options struct {
	// Prefix starts the name of every namespace and of the one root link;
	// keep it at most 9 bytes. Required.
	Prefix string
	// Dir holds the state, logs, configs and the control plane's data.
	// Required: missing, empty, or an earlier lab's (it holds the file
	// MarkerName); Up refuses anything else. Down removes what the lab put
	// there, and Dir itself if the lab created it (see [ClaimDir]).
	Dir string
	// Slot (0..5) picks the lab's core subnet 198.51.100.(128+16*Slot)/28,
	// whose first address the kube-apiserver binds on the host (the only
	// address the lab puts in the root namespace; 192.0.2.0/24 is often the
	// host's own network). Labs running at once need distinct slots;
	// everything else lives in namespaces.
	Slot int
	// BinDir holds kube-apiserver (default: controlplane.BinDir).
	BinDir string
	// Binaries: the CCM, the machine agent and lbprobe. Empty: built into
	// Dir/bin.
	CCMBinary, AgentBinary, ProbeBinary string
	// HoldTime of the BGP sessions, seconds (default 9).
	HoldTime int
	// Logf reports progress (default: nothing).
	Logf func(format string, args ...any)
}

// Rack is one rack: its ToR and its nodes.
type Rack struct {
	Name string // rack-a
	ASN  int
	NS   *fabric.Namespace
	fabric.Router
	Core4 netip.Addr // the ToR on the core LAN
	Core6 netip.Addr
	Net4  netip.Prefix
	Net6  netip.Prefix
	Nodes []*Node
}

// Node is one machine with its agent.
type Node struct {
	Name     string // node-a1
	Rack     *Rack
	NS       *fabric.Namespace
	Addr4    netip.Addr
	Addr6    netip.Addr
	FailFile string
	Agent    *Proc
}

// Lab is a running lab.
type Lab struct {
	Opts   Options
	CP     *controlplane.ControlPlane
	Racks  []*Rack
	Client *fabric.Namespace
	// ClientFRR learns the VIPs from both ToRs (ECMP over them).
	ClientFRR *fabric.FRR
	CCMs      []*CCM
	CoreNS    *fabric.Namespace
	Host4     netip.Addr // the apiserver's address on the host

	mu    sync.Mutex
	procs []*Proc
}

// CCM is one replica, in its own namespace.
type CCM struct {
	Name     string
	NS       *fabric.Namespace
	Addr4    netip.Addr
	Addr6    netip.Addr
	Config   string
	Proc     *Proc
	lab      *Lab
	routerID string
}

// State is what hack/lab keeps in Dir/state.json: enough for down to
// remove everything, also after a failed or interrupted up.
type State struct {
	Prefix string `json:"prefix"`
	Slot   int    `json:"slot"`
	// ServerPID is the process holding the lab (hack/lab serve).
	ServerPID int    `json:"serverPID,omitempty"`
	Ready     bool   `json:"ready"`
	Error     string `json:"error,omitempty"`
	// Kubeconfig of the admin, once the control plane runs.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// PIDs of processes outside the namespaces (etcd, kube-apiserver).
	PIDs []int `json:"pids,omitempty"`
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Addresses of the plan (documentation ranges only).
func (o *Options) core4(host byte) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 51, 100, byte(128+16*o.Slot) + host})
}

func core6(host byte) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:c0::%x", host))
}

func (o *Options) table() int { return 4200 + o.Slot }

// RackNets are the racks' LANs.
var RackNets = []struct {
	Name       string
	Net4, Net6 netip.Prefix
	ASN        int
}{
	{"rack-a", netip.MustParsePrefix("198.51.100.64/28"), netip.MustParsePrefix("2001:db8:a::/64"), 65001},
	{"rack-b", netip.MustParsePrefix("198.51.100.80/28"), netip.MustParsePrefix("2001:db8:b::/64"), 65002},
}

// Pools of the lab's VIPs.
const (
	Pool4 = "203.0.113.0/25"
	Pool6 = "2001:db8:100::/120"
)

// defaultHoldTime is the sessions' hold time unless Options say.
const defaultHoldTime = 9

// NodesPerRack is the number of machines in each rack.
const NodesPerRack = 3

func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	return a
}

// WriteState writes s to dir/state.json (write, then rename).
func WriteState(dir string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "state.json"))
}

// ReadState reads dir/state.json.
func ReadState(dir string) (State, error) {
	var s State
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Join(dir, "state.json"), err)
	}
	return s, nil
}

// Up builds the lab. On error everything built so far is removed again.
func Up(ctx context.Context, o Options) (l *Lab, err error) {
	if o.Prefix == "" || len(o.Prefix) > 9 || o.Dir == "" || o.Slot < 0 || o.Slot > 5 {
		return nil, errors.New("lab: Prefix (at most 9 bytes), Dir and Slot 0..5 are required")
	}
	if o.HoldTime == 0 {
		o.HoldTime = defaultHoldTime
	}
	if err := ClaimDir(o.Dir); err != nil {
		return nil, err
	}
	st, _ := ReadState(o.Dir)
	st.Prefix, st.Slot = o.Prefix, o.Slot
	if err := WriteState(o.Dir, st); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l = &Lab{Opts: o, Host4: o.core4(1)}
	defer func() {
		if err != nil {
			_ = l.Down()
		}
	}()
	if err := l.buildBinaries(ctx); err != nil {
		return l, err
	}
	o = l.Opts
	o.logf("building the fabric (prefix %s, core %s/28)", o.Prefix, o.core4(0))
	if err := l.buildFabric(ctx); err != nil {
		return l, fmt.Errorf("lab: fabric: %w", err)
	}
	o.logf("starting etcd and kube-apiserver on %s", l.Host4)
	cpDir := filepath.Join(o.Dir, "controlplane")
	if err := os.MkdirAll(cpDir, 0o755); err != nil {
		return l, err
	}
	l.CP, err = controlplane.Start(ctx, controlplane.Options{Dir: cpDir, BindAddress: l.Host4.String(), BinDir: o.BinDir})
	if err != nil {
		return l, fmt.Errorf("lab: control plane: %w", err)
	}
	st.Kubeconfig = l.CP.Kubeconfig
	st.PIDs = controlPlanePIDs(cpDir)
	if err := WriteState(o.Dir, st); err != nil {
		return l, err
	}
	o.logf("starting FRR on the ToRs and the client")
	if err := l.startRouters(); err != nil {
		return l, fmt.Errorf("lab: routers: %w", err)
	}
	o.logf("starting the machine agents")
	for _, r := range l.Racks {
		for _, n := range r.Nodes {
			if err := l.startAgent(n); err != nil {
				return l, err
			}
		}
	}
	o.logf("starting two CCM replicas")
	for _, c := range l.CCMs {
		if err := c.Start(); err != nil {
			return l, err
		}
	}
	if err := l.waitReady(ctx); err != nil {
		return l, err
	}
	st.Ready = true
	if err := WriteState(o.Dir, st); err != nil {
		return l, err
	}
	return l, nil
}

func (l *Lab) buildBinaries(ctx context.Context) error {
	o := &l.Opts
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	bin := filepath.Join(o.Dir, "bin")
	for _, b := range []struct {
		dst *string
		pkg string
	}{
		{&o.CCMBinary, "./cmd/baremetal-cloud-controller-manager"},
		{&o.AgentBinary, "./test/agent/cmd/machine-agent"},
		{&o.ProbeBinary, "./test/agent/cmd/lbprobe"},
	} {
		if *b.dst != "" {
			continue
		}
		*b.dst = filepath.Join(bin, filepath.Base(b.pkg))
		o.logf("go build %s", b.pkg)
		if err := BuildBinary(ctx, root, b.pkg, *b.dst); err != nil {
			return err
		}
	}
	return nil
}

// BuildBinary builds the package pkg of the repository at root into dst.
func BuildBinary(ctx context.Context, root, pkg, dst string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", dst, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return nil
}

func controlPlanePIDs(dir string) []int {
	// The control plane's processes are ours if their command line names
	// our directory; found through /proc, since controlplane does not
	// export them.
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(b), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ip runs ip in ns.
func ip(ctx context.Context, ns *fabric.Namespace, args ...string) error {
	_, err := ns.IP(ctx, args...)
	return err
}

func sysctl(ctx context.Context, ns *fabric.Namespace, kv ...string) error {
	return fabric.Sysctl(ctx, ns, kv...)
}

func (l *Lab) newNS(ctx context.Context, suffix string) (*fabric.Namespace, error) {
	ns, err := fabric.CreateNamespace(ctx, l.Opts.Prefix+suffix)
	if err != nil {
		return ns, err
	}
	return ns, sysctl(ctx, ns, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
}

var (
	veth = fabric.CreateVeth
	addr = fabric.AddAddress
)

func (l *Lab) buildFabric(ctx context.Context) error {
	o := &l.Opts
	var err error
	if l.CoreNS, err = l.newNS(ctx, "core"); err != nil {
		return err
	}
	core := l.CoreNS
	if err := ip(ctx, core, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"); err != nil {
		return err
	}
	if err := ip(ctx, core, "link", "set", "br0", "up"); err != nil {
		return err
	}
	// attach connects ns (its end "core") to the core bridge.
	attach := func(ns *fabric.Namespace, port string, host byte) error {
		if err := veth(ctx, "core", ns, port, core); err != nil {
			return err
		}
		if err := ip(ctx, core, "link", "set", port, "master", "br0"); err != nil {
			return err
		}
		if err := addr(ctx, ns, "core", o.core4(host), 28); err != nil {
			return err
		}
		return addr(ctx, ns, "core", core6(host), 64)
	}
	// The host: the root end carries the apiserver's address.
	hostLink := o.Prefix + "h"
	if err := veth(ctx, hostLink, fabric.Root, "host", core); err != nil {
		return err
	}
	if err := ip(ctx, core, "link", "set", "host", "master", "br0"); err != nil {
		return err
	}
	if err := addr(ctx, fabric.Root, hostLink, l.Host4, 28); err != nil {
		return err
	}
	// Answers from the apiserver to the racks go back through the ToRs:
	// a table of this lab's own, used only for its own source address, so
	// that the host's routing and other labs are untouched.
	if err := ip(ctx, fabric.Root, "rule", "add", "from", l.Host4.String(), "lookup", strconv.Itoa(o.table()), "pref", strconv.Itoa(o.table())); err != nil {
		return err
	}

	if err := ip(ctx, fabric.Root, "route", "add", o.core4(0).String()+"/28", "dev", hostLink, "table", strconv.Itoa(o.table())); err != nil {
		return err
	}
	for i, rn := range RackNets {
		r := &Rack{Name: rn.Name, ASN: rn.ASN, Net4: rn.Net4, Net6: rn.Net6,
			Core4: o.core4(byte(2 + i)), Core6: core6(byte(2 + i))}
		l.Racks = append(l.Racks, r)
		letter := string(rune('a' + i))
		if r.NS, err = l.newNS(ctx, "tor-"+letter); err != nil {
			return err
		}
		if err := sysctl(ctx, r.NS, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
			"net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1"); err != nil {
			return err
		}
		if err := attach(r.NS, "tor"+letter, byte(2+i)); err != nil {
			return err
		}
		if err := ip(ctx, fabric.Root, "route", "add", r.Net4.String(), "via", r.Core4.String(), "dev", hostLink, "table", strconv.Itoa(o.table())); err != nil {
			return err
		}
		if err := ip(ctx, r.NS, "link", "add", "rack", "type", "bridge", "mcast_snooping", "0"); err != nil {
			return err
		}
		if err := ip(ctx, r.NS, "link", "set", "rack", "up"); err != nil {
			return err
		}
		gw4, gw6 := nth(r.Net4, 1), nth(r.Net6, 1)
		if err := addr(ctx, r.NS, "rack", gw4, r.Net4.Bits()); err != nil {
			return err
		}
		if err := addr(ctx, r.NS, "rack", gw6, r.Net6.Bits()); err != nil {
			return err
		}
		for j := 1; j <= NodesPerRack; j++ {
			n := &Node{Name: fmt.Sprintf("node-%s%d", letter, j), Rack: r,
				Addr4: nth(r.Net4, 1+j), Addr6: nth(r.Net6, 0x10+j),
				FailFile: filepath.Join(o.Dir, "nodes", fmt.Sprintf("node-%s%d.fail", letter, j))}
			r.Nodes = append(r.Nodes, n)
			if n.NS, err = l.newNS(ctx, letter+strconv.Itoa(j)); err != nil {
				return err
			}
			port := "n" + strconv.Itoa(j)
			if err := veth(ctx, "eth0", n.NS, port, r.NS); err != nil {
				return err
			}
			if err := ip(ctx, r.NS, "link", "set", port, "master", "rack"); err != nil {
				return err
			}
			if err := addr(ctx, n.NS, "eth0", n.Addr4, r.Net4.Bits()); err != nil {
				return err
			}
			if err := addr(ctx, n.NS, "eth0", n.Addr6, r.Net6.Bits()); err != nil {
				return err
			}
			if err := ip(ctx, n.NS, "route", "add", "default", "via", gw4.String()); err != nil {
				return err
			}
			if err := ip(ctx, n.NS, "-6", "route", "add", "default", "via", gw6.String()); err != nil {
				return err
			}
		}
	}
	if l.Client, err = l.newNS(ctx, "client"); err != nil {
		return err
	}
	if err := sysctl(ctx, l.Client, "net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1"); err != nil {
		return err
	}
	if err := attach(l.Client, "client", 6); err != nil {
		return err
	}
	for i := range 2 {
		c := &CCM{Name: fmt.Sprintf("ccm-%d", i+1), lab: l, Addr4: o.core4(byte(4 + i)), Addr6: core6(byte(4 + i))}
		c.routerID = c.Addr4.String()
		if c.NS, err = l.newNS(ctx, fmt.Sprintf("cp%d", i+1)); err != nil {
			return err
		}
		if err := attach(c.NS, fmt.Sprintf("cp%d", i+1), byte(4+i)); err != nil {
			return err
		}
		for _, r := range l.Racks {
			if err := ip(ctx, c.NS, "route", "add", r.Net4.String(), "via", r.Core4.String()); err != nil {
				return err
			}
			if err := ip(ctx, c.NS, "-6", "route", "add", r.Net6.String(), "via", r.Core6.String()); err != nil {
				return err
			}
		}
		l.CCMs = append(l.CCMs, c)
	}
	return os.MkdirAll(filepath.Join(o.Dir, "nodes"), 0o755)
}

// torConf is a ToR's bgpd.conf. Weighted ECMP needs nothing more than
// maximum-paths: FRR weights the multipaths by their link-bandwidth
// communities by default (docs/weighted-ecmp.md).
func (l *Lab) torConf(r *Rack) string {
	ccms := make([]netip.Addr, len(l.CCMs))
	for i, c := range l.CCMs {
		ccms[i] = c.Addr4
	}
	return ToRBGPD(l.Opts, r.ASN, r.Core4, ccms).String()
}

// ToRBGPD is the bgpd.conf of a ToR of the lab (AS asn, router ID id):
// an eBGP session with each replica (ccms, on the core LAN) carrying both
// families, and one per family with the client, ECMP over 16 paths.
// docs/router-configuration.md shows it for rack-a (ExampleToRBGPD; test/docs
// checks the text).
func ToRBGPD(o Options, asn int, id netip.Addr, ccms []netip.Addr) fabric.BGPD {
	c := fabric.BGPD{ASN: asn, RouterID: id, Keepalive: max(1, o.HoldTime/3), Hold: o.HoldTime, MaximumPaths: 16}
	for i, a := range ccms {
		c.Neighbors = append(c.Neighbors, fabric.BGPNeighbor{Addr: a, ASN: CCMASN, ConnectRetry: 1, IPv6: true,
			Comment: fmt.Sprintf("baremetal-ccm replica %d: one session carries both families", i+1)})
	}
	c.Neighbors = append(c.Neighbors,
		fabric.BGPNeighbor{Addr: o.core4(6), ASN: ClientASN, ConnectRetry: 1, Comment: "the client, IPv4"},
		fabric.BGPNeighbor{Addr: core6(6), ASN: ClientASN, ConnectRetry: 1, NoIPv4: true, IPv6: true, Comment: "the client, IPv6"})
	return c
}

// ExampleToRBGPD is rack-a's ToRBGPD in a lab of slot 0 with the default
// hold time, as `make demo` builds it.
func ExampleToRBGPD() fabric.BGPD {
	o := Options{HoldTime: defaultHoldTime}
	return ToRBGPD(o, RackNets[0].ASN, o.core4(2), []netip.Addr{o.core4(4), o.core4(5)})
}

func (l *Lab) clientConf() string {
	c := fabric.BGPD{ASN: ClientASN, RouterID: l.Opts.core4(6), Keepalive: max(1, l.Opts.HoldTime/3), Hold: l.Opts.HoldTime,
		MaximumPaths: 16, MultipathRelax: true}
	for _, r := range l.Racks {
		c.Neighbors = append(c.Neighbors,
			fabric.BGPNeighbor{Addr: r.Core4, ASN: r.ASN, ConnectRetry: 1, SendNothing: true},
			fabric.BGPNeighbor{Addr: r.Core6, ASN: r.ASN, ConnectRetry: 1, NoIPv4: true, IPv6: true, SendNothing: true})
	}
	return c.String()
}

func (l *Lab) startRouters() error {
	for _, r := range l.Racks {
		r.Configure(r.NS, filepath.Join(l.Opts.Dir, "frr", r.Name), l.torConf(r))
		if err := r.StartFRR(); err != nil {
			return err
		}
	}
	dir := filepath.Join(l.Opts.Dir, "frr", "client")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := fabric.NewFRR(l.Client, dir, l.clientConf())
	l.ClientFRR = f
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}

// CloudConfig is the replicas' cloud config.
func (l *Lab) CloudConfig() string {
	var b strings.Builder
	b.WriteString("region: lab\nracks:\n")
	for _, r := range l.Racks {
		fmt.Fprintf(&b, "- name: %s\n  zone: zone-%s\n  subnets: [%s, %s]\n", r.Name, strings.TrimPrefix(r.Name, "rack-"), r.Net4, r.Net6)
	}
	fmt.Fprintf(&b, "pools:\n- name: public\n  addresses: [%s, %s]\n  avoidBuggyIPs: true\n", Pool4, Pool6)
	// listenPort: a restarted ToR connects at once (its connect timer is
	// 1 s) instead of waiting for the speaker's next attempt.
	fmt.Fprintf(&b, "bgp:\n  asn: %d\n  listenPort: 179\n  holdTime: %ds\n  keepaliveTime: %ds\n  peers:\n", CCMASN, l.Opts.HoldTime, max(1, l.Opts.HoldTime/3))
	for _, r := range l.Racks {
		fmt.Fprintf(&b, "  - name: tor-%s\n    address: %s\n    asn: %d\n    rack: %s\n", strings.TrimPrefix(r.Name, "rack-"), r.Core4, r.ASN, r.Name)
	}
	b.WriteString("healthCheck:\n  interval: 300ms\n  timeout: 200ms\n  unhealthyThreshold: 2\n  healthyThreshold: 2\n")
	return b.String()
}

// Proc is a process the lab started; its output goes to Log.
type Proc = proc.Proc

func (l *Lab) start(name string, ns *fabric.Namespace, bin string, args ...string) (*Proc, error) {
	p := proc.New(name, filepath.Join(l.Opts.Dir, "logs", name+".log"), append([]string{"ip", "netns", "exec", ns.Name, bin}, args...)...)
	if err := os.MkdirAll(filepath.Dir(p.Log), 0o755); err != nil {
		return nil, err
	}
	if err := p.Start(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

func (l *Lab) startAgent(n *Node) error {
	var err error
	n.Agent, err = l.start(n.Name, n.NS, l.Opts.AgentBinary,
		"--kubeconfig="+l.CP.Kubeconfig, "--node-name="+n.Name,
		"--node-ip="+n.Addr4.String()+","+n.Addr6.String(), "--fail-file="+n.FailFile)
	return err
}

// Start starts the replica (again, after Proc.Kill or Proc.Stop).
func (c *CCM) Start() error {
	if c.Proc != nil {
		return c.Proc.Start()
	}
	c.Config = filepath.Join(c.lab.Opts.Dir, c.Name+".yaml")
	if err := os.WriteFile(c.Config, []byte(c.lab.CloudConfig()), 0o644); err != nil {
		return err
	}
	var err error
	c.Proc, err = c.lab.start(c.Name, c.NS, c.lab.Opts.CCMBinary,
		"--cloud-provider=baremetal",
		"--kubeconfig="+c.lab.CP.Kubeconfig, "--cloud-config="+c.Config,
		"--leader-elect=true", "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms",
		"--bgp-router-id="+c.routerID,
		"--secure-port=0", "--node-monitor-period=1s", "--cloud-config-reload-interval=1s", "--v=2")
	return err
}

// IsLeader reports whether the replica's log says it holds the lease.
func (c *CCM) IsLeader() bool {
	b, _ := os.ReadFile(c.Proc.Log)
	return strings.Contains(strings.ToLower(string(b)), "successfully acquired lease")
}

// Nodes returns every node.
func (l *Lab) Nodes() []*Node {
	var out []*Node
	for _, r := range l.Racks {
		out = append(out, r.Nodes...)
	}
	return out
}

// SetHealthy makes the node's healthz answer 200 (true) or 503.
func (n *Node) SetHealthy(ok bool) error {
	if ok {
		if err := os.Remove(n.FailFile); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	return os.WriteFile(n.FailFile, nil, 0o644)
}

// readyWait bounds the wait for the lab's sessions and Nodes: generous,
// since a busy machine starts a dozen processes slowly.
const readyWait = 3 * time.Minute

func (l *Lab) waitReady(ctx context.Context) error {
	l.Opts.logf("waiting for the BGP sessions and the Nodes")
	return fabric.Eventually(ctx, readyWait, 250*time.Millisecond, func() error {
		for _, p := range l.allProcs() {
			if !p.Running() {
				return fmt.Errorf("%s exited: %s", p.Name, p.LogTail(20))
			}
		}
		for _, r := range l.Racks {
			for _, c := range l.CCMs {
				s, err := r.FRR.BGPNeighborState(ctx, c.Addr4.String())
				if err != nil {
					return err
				}
				if s != "Established" {
					return fmt.Errorf("%s: session with %s is %s", r.Name, c.Name, s)
				}
			}
		}
		nodes, err := l.CP.Client.CoreV1().Nodes().List(ctx, listAll)
		if err != nil {
			return err
		}
		if len(nodes.Items) != len(l.Nodes()) {
			return fmt.Errorf("%d nodes registered, want %d", len(nodes.Items), len(l.Nodes()))
		}
		for _, n := range nodes.Items {
			if slices.ContainsFunc(n.Spec.Taints, func(t v1.Taint) bool { return t.Key == cloudproviderapi.TaintExternalCloudProvider }) {
				return fmt.Errorf("node %s not initialized yet (taints %v)", n.Name, n.Spec.Taints)
			}
		}
		return nil
	})
}

func (l *Lab) allProcs() []*Proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Proc(nil), l.procs...)
}

// Down stops every process and removes the namespaces, the root link, the
// routing rule and Dir. It may be called on a half-built lab.
func (l *Lab) Down() error {
	var errs []error
	for _, p := range l.allProcs() {
		p.Stop()
	}
	for _, r := range l.Racks {
		r.StopFRR()
	}
	if l.ClientFRR != nil {
		l.ClientFRR.Stop()
	}
	if l.CP != nil {
		l.CP.Stop()
	}
	if err := Cleanup(l.Opts.Prefix, l.Opts.Dir, l.Opts.Slot); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Cleanup removes what a lab with this prefix and slot left behind, also
// without a Lab (hack/lab down after a crash): its namespaces (killing
// their processes), its root link, its routing rule, the control plane
// processes named in dir's state, and what the lab put in dir
// ([RemoveDir]). A dir that holds files but not the lab's marker is
// refused before anything is touched (an error wrapping [ErrNotLabDir]).
func Cleanup(prefix, dir string, slot int) error {
	if err := CheckDir(dir); err != nil {
		return err
	}
	var errs []error
	if st, err := ReadState(dir); err == nil {
		for _, pid := range st.PIDs {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err == nil && strings.Contains(string(b), dir) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// The root end of the host link first: a namespace's deletion removes
	// its veths asynchronously, which would race with fabric.Cleanup.
	if prefix != "" {
		_ = ip(context.Background(), fabric.Root, "link", "del", prefix+"h")
	}
	if err := fabric.Cleanup(prefix); err != nil {
		errs = append(errs, err)
	}
	o := Options{Slot: slot}
	ctx := context.Background()
	for range 4 { // a rule added twice by an interrupted run is deleted twice
		if ip(ctx, fabric.Root, "rule", "del", "from", o.core4(1).String(), "lookup", strconv.Itoa(o.table())) != nil {
			break
		}
	}
	if err := RemoveDir(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

var listAll = metav1.ListOptions{}
