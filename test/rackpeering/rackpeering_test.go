package rackpeering

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
	"github.com/baremetal-ccm/baremetal-ccm/test/kubelet"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
)

// waitTimeout is generous: a busy 2-core machine starts FRR, etcd,
// kube-apiserver and two replicas.
const waitTimeout = 2 * time.Minute

// topology is the running fabric.
type topology struct {
	frrs     map[string]*fabric.FRR       // by rack, the FRR ToRs
	birds    map[string]*fabric.BIRD      // by rack, the BIRD ToRs
	tors     map[string]*fabric.Namespace // by rack
	replicas map[string]*fabric.Namespace // by rack, for the racks with one
}

// build creates the namespaces, links and routes of the topology and
// starts the ToRs' FRR; t.Cleanup removes everything.
func build(t *testing.T) *topology {
	t.Helper()
	ctx := context.Background()
	prefix := fabric.UniqueName("rp")
	n := &topology{frrs: map[string]*fabric.FRR{}, birds: map[string]*fabric.BIRD{}, tors: map[string]*fabric.Namespace{}, replicas: map[string]*fabric.Namespace{}}
	ip := func(ns *fabric.Namespace, args ...string) {
		t.Helper()
		if _, err := ns.IP(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	core := fabric.NewNamespace(t, prefix+"-core")
	ip(core, "link", "add", "br0", "type", "bridge")
	ip(core, "link", "set", "br0", "up")
	torNS := map[string]*fabric.Namespace{}
	for i, r := range Racks {
		letter := strings.TrimPrefix(r.Name, "rack-")
		tor := fabric.NewNamespace(t, prefix+"-tor"+letter)
		torNS[r.Name] = tor
		if _, err := tor.Exec(ctx, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
			t.Fatal(err)
		}
		port := fmt.Sprintf("p%d", i)
		fabric.Veth(t, "core", tor, port, core)
		ip(core, "link", "set", port, "master", "br0")
		fabric.AddAddr(t, tor, "core", netip.PrefixFrom(r.Core, CoreLAN.Bits()))
		if r.Replica.IsValid() {
			cp := fabric.NewNamespace(t, prefix+"-cp"+letter)
			n.replicas[r.Name] = cp
			fabric.Veth(t, "lan", tor, "tor", cp)
			fabric.AddAddr(t, tor, "lan", netip.PrefixFrom(r.ToR, r.Subnet.Bits()))
			fabric.AddAddr(t, cp, "tor", netip.PrefixFrom(r.Replica, r.Subnet.Bits()))
			ip(cp, "route", "add", "default", "via", r.ToR.String())
		} else {
			// A rack of workers only: its LAN ends in the ToR (a veth
			// whose peer stays there too: no dummy module needed).
			fabric.Veth(t, "lan", tor, "lanend", tor)
			fabric.AddAddr(t, tor, "lan", netip.PrefixFrom(r.ToR, r.Subnet.Bits()))
		}
	}
	for _, r := range Racks {
		for _, o := range Racks {
			if o.Name != r.Name {
				ip(torNS[r.Name], "route", "add", o.Subnet.String(), "via", o.Core.String())
			}
		}
		n.tors[r.Name] = torNS[r.Name]
		if r.BIRD {
			n.birds[r.Name] = fabric.StartBIRD(t, torNS[r.Name], t.TempDir(), ToRBIRD(r).String())
		} else {
			n.frrs[r.Name] = fabric.StartFRR(t, torNS[r.Name], t.TempDir(), ToRBGPD(r).String())
		}
	}
	return n
}

// kubeconfigIn writes a copy of the admin kubeconfig that reaches the
// apiserver from inside ns.
func kubeconfigIn(t *testing.T, cp *controlplane.ControlPlane, ns *fabric.Namespace) string {
	t.Helper()
	addr := fabric.ForwardInto(t, ns, strings.TrimPrefix(cp.URL, "https://"))
	data, err := os.ReadFile(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), cp.URL) {
		t.Fatalf("the kubeconfig does not name %s", cp.URL)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(data), cp.URL, "https://"+addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitRoute waits until ns's kernel route to vip goes via exactly want.
func waitRoute(t *testing.T, tor *fabric.Namespace, vip netip.Addr, want []netip.Addr, what string) {
	t.Helper()
	var got []netip.Addr
	err := fabric.Eventually(context.Background(), waitTimeout, 200*time.Millisecond, func() error {
		routes, err := fabric.Routes(context.Background(), tor, netip.PrefixFrom(vip, 32))
		if err != nil {
			return err
		}
		got = nil
		for _, r := range routes {
			got = append(got, r.Gateways()...)
		}
		slices.SortFunc(got, netip.Addr.Compare)
		if !slices.Equal(got, want) {
			return fmt.Errorf("via %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %s's route to %s: %v, want via %v", what, tor, vip, err, want)
	}
}

// waitSessions waits until rack's ToR has its session with the replica
// of each rack up (true) or not.
func (n *topology) waitSessions(t *testing.T, rack string, want map[string]bool) {
	t.Helper()
	ctx := context.Background()
	err := fabric.Eventually(ctx, waitTimeout, 250*time.Millisecond, func() error {
		for replica, up := range want {
			var established bool
			var state string
			if b, ok := n.birds[rack]; ok {
				var err error
				if established, err = b.Established(ctx, BIRDProtocol(rackNamed(replica))); err != nil {
					return err
				}
				state = fmt.Sprint("Established: ", established)
			} else {
				got, err := n.frrs[rack].BGPNeighborState(ctx, rackNamed(replica).Replica.String())
				if err != nil {
					return err
				}
				established, state = got == "Established", got
			}
			if established != up {
				return fmt.Errorf("the session with the replica of %s is %s, want up=%v", replica, state, up)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s's ToR: %v", rack, err)
	}
}

func rackNamed(name string) Rack {
	for _, r := range Racks {
		if r.Name == name {
			return r
		}
	}
	panic("no rack " + name)
}

// TestRackAwarePeering runs two replicas, in racks a and b, against the
// three racks' ToRs (FRR in racks a and c, BIRD in rack b): each replica peers only with the routers whose
// dialFrom holds its rack; every ToR hears from both replicas, directly
// (with GTSM) from the one in its rack and over eBGP multihop from the
// other; rack c, without a control-plane node, gets its VIP paths over
// two multihop sessions whose next hops are its own nodes (third-party
// next hops). Each ToR keeps its route when one replica is gone.
func TestRackAwarePeering(t *testing.T) {
	fabric.Require(t, true)
	fabric.RequireBIRD(t)
	controlplane.RequireTools(t, "etcd")
	fab := build(t)
	cp := controlplane.StartT(t)
	c := cp.Client

	cfg := filepath.Join(t.TempDir(), "cloud.yaml")
	ccm.WriteConfig(t, cfg, CloudConfig())
	procs := map[string]*ccm.Process{}
	for _, r := range Racks {
		ns, ok := fab.replicas[r.Name]
		if !ok {
			continue
		}
		// The DaemonSet sets NODE_IP; the rack comes from it.
		procs[r.Name] = ccm.Start(t, ccm.Options{
			Kubeconfig: kubeconfigIn(t, cp, ns), CloudConfig: cfg,
			Wrap: []string{"ip", "netns", "exec", ns.Name, "env", "NODE_IP=" + r.Replica.String()},
			Args: []string{"--leader-elect=true", "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"},
		})
	}
	for _, r := range Racks {
		addrs := r.Workers
		if r.Replica.IsValid() {
			addrs = append([]netip.Addr{r.Replica}, addrs...)
		}
		for i, a := range addrs {
			name := fmt.Sprintf("node-%s%d", strings.TrimPrefix(r.Name, "rack-"), i+1)
			kubelet.Register(t, c, name, a.String())
		}
	}

	// Every ToR hears from both replicas.
	for _, r := range Racks {
		fab.waitSessions(t, r.Name, map[string]bool{"rack-a": true, "rack-b": true})
	}
	for rack, want := range map[string]string{
		"rack-a": `["tor-a","tor-b-far","tor-c"]`,
		"rack-b": `["tor-a-far","tor-b","tor-c"]`,
	} {
		p := procs[rack]
		if !strings.Contains(p.Log(), `"BGP peers of this replica" rack="`+rack+`"`) || !strings.Contains(p.Log(), "peers="+want) {
			t.Errorf("the replica of %s does not log its rack and peers %s:\n%s", rack, want, p.LogTail(40))
		}
	}

	if _, err := c.CoreV1().Services("default").Create(context.Background(), lbservice.New("web", 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var vip netip.Addr
	err := fabric.Eventually(context.Background(), waitTimeout, 200*time.Millisecond, func() error {
		s, err := c.CoreV1().Services("default").Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("no address yet: %v", err)
		}
		vip, err = netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Each ToR routes the VIP to its own rack's nodes only, ECMP over
	// them; rack c's next hops came over multihop sessions only, and are
	// its workers (third-party next hops). Rack b's ToR is BIRD.
	routes := map[string][]netip.Addr{
		"rack-a": {Racks[0].Replica}, "rack-b": {Racks[1].Replica, Racks[1].Workers[0]}, "rack-c": Racks[2].Workers,
	}
	for rack, want := range routes {
		waitRoute(t, fab.tors[rack], vip, want, "both replicas up")
	}
	// Rack c holds the paths of both replicas, each with both nodes.
	paths, err := fab.frrs["rack-c"].BGPPaths(context.Background(), netip.PrefixFrom(vip, 32).String())
	if err != nil {
		t.Fatal(err)
	}
	from := map[string]int{}
	for _, p := range paths {
		from[p.Peer.PeerID]++
	}
	if from[Racks[0].Replica.String()] != 2 || from[Racks[1].Replica.String()] != 2 {
		t.Errorf("tor-c's paths for %s by replica: %v, want 2 from each of %s and %s", vip, from, Racks[0].Replica, Racks[1].Replica)
	}

	// Rack a's replica goes: every ToR still routes the VIP, from the
	// replica of rack b, directly or over multihop.
	procs["rack-a"].Stop()
	for _, r := range Racks {
		fab.waitSessions(t, r.Name, map[string]bool{"rack-a": false, "rack-b": true})
	}
	for rack, want := range routes {
		waitRoute(t, fab.tors[rack], vip, want, "the replica of rack-a gone")
	}
}
