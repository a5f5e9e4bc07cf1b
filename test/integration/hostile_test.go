package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
)

// hostileEnv is one cluster, router and CCM that every hostile case runs
// against, with a canary Service whose address and route must survive
// them all.
type hostileEnv struct {
	c      kubernetes.Interface
	router *bgprouter.Router
	ccm    *ccm.Process
	port   int // the CCM's secure port, for /metrics
	// config is the cloud config file and base its content.
	config, base string
	// reloads counts the reloads of each result seen so far.
	reloads map[string]int
}

var canaryHops = []string{"198.51.100.11", "198.51.100.12"}

// TestHostileInput: no Service, Node, status, router or config file may
// crash the CCM, move another Service's address or route, or stall it.
// Each case is something a user with namespace RBAC, a kubelet, or a bad
// file can do; after each, the canary Service keeps its address and its
// route, and the CCM runs. (The speaker's own hostile cases, with the
// memory a router's 100,000 routes cost, are in bgp/hostile_test.go; an
// announce that fails after a request change, which nothing outside the
// process can cause, in provider/hostile_test.go.)
func TestHostileInput(t *testing.T) {
	e := startHostileEnv(t)
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, e *hostileEnv)
	}{
		{"1,100 communities on an IPv4 VIP", func(t *testing.T, e *hostileEnv) {
			e.refused(t, lbservice.New("huge4", 80, withCommunities(1100)), "InvalidAnnotation", "4400 bytes")
		}},
		{"1,100 communities on an IPv6 VIP", func(t *testing.T, e *hostileEnv) {
			e.refused(t, lbservice.New("huge6", 80, lbservice.SingleStack(v1.IPv6Protocol), withCommunities(1100)), "InvalidAnnotation", "4400 bytes")
		}},
		{"a large community in the speaker's rack-marker range", func(t *testing.T, e *hostileEnv) {
			e.refused(t, lbservice.New("marker", 80, withAnnotation("baremetal-ccm.io/bgp-large-communities", "64512:1380008779:1")), "InvalidAnnotation", "reserve")
		}},
		{"a holder of a shared VIP turns bad", func(t *testing.T, e *hostileEnv) {
			share := withAnnotation("baremetal-ccm.io/allow-shared-ip", "k")
			createService(t, e.c, lbservice.New("share-a", 80, share, withAnnotation("baremetal-ccm.io/bgp-communities", "65000:1")))
			createService(t, e.c, lbservice.New("share-b", 443, share))
			ip := waitAnyIngress(t, e.c, "share-a")
			waitIngress(t, e.c, "share-b", ip)
			updateService(t, e.c, "share-b", withAnnotation("baremetal-ccm.io/bgp-large-communities", "64512:1380008779:1"))
			waitEvent(t, e.c, "share-b", "InvalidAnnotation")
			// The shared VIP keeps its route, and its other holder its
			// attributes' effect: both stay announced via both nodes.
			waitRoutes(t, e.router, "shared VIP with a bad holder", map[string][]string{ip: canaryHops})
		}},
		{"a misspelt weighted-ecmp annotation: told, not refused", func(t *testing.T, e *hostileEnv) {
			createService(t, e.c, lbservice.New("wecmp-typo", 80, withAnnotation("baremetal-ccm.io/weighted-ecmp", "flase")))
			ip := waitAnyIngress(t, e.c, "wecmp-typo")
			if msg := waitEvent(t, e.c, "wecmp-typo", "InvalidAnnotation"); !strings.Contains(msg, `"flase"`) {
				t.Errorf("InvalidAnnotation event %q does not quote the value", msg)
			}
			waitRoutes(t, e.router, "a Service with a misspelt weighted-ecmp annotation", map[string][]string{ip: canaryHops})
		}},
		{"a Node claims another Node's address", func(t *testing.T, e *hostileEnv) {
			registerNode(t, e.c, "rogue", "198.51.100.11")
			waitNodeEvent(t, e.c, "rogue", "DuplicateNodeAddress")
			createService(t, e.c, lbservice.New("after-rogue", 80))
			ip := waitAnyIngress(t, e.c, "after-rogue")
			waitRoutes(t, e.router, "a new Service after the rogue Node", map[string][]string{ip: canaryHops})
		}},
		{"a status address outside every pool", func(t *testing.T, e *hostileEnv) {
			createService(t, e.c, lbservice.New("forged", 80))
			ip := waitAnyIngress(t, e.c, "forged")
			// The CCM writes this status too (its conditions): forge on
			// the latest version.
			err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
				s, err := e.c.CoreV1().Services("default").Get(context.Background(), "forged", metav1.GetOptions{})
				if err != nil {
					return err
				}
				s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: "198.51.100.250"})
				_, err = e.c.CoreV1().Services("default").UpdateStatus(context.Background(), s, metav1.UpdateOptions{})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			// The Warning says the announcer has seen the status.
			if msg := waitEvent(t, e.c, "forged", "AddressNotAnnounced"); !strings.Contains(msg, "198.51.100.250") {
				t.Errorf("AddressNotAnnounced event %q does not name the address", msg)
			}
			waitRoutes(t, e.router, "forged status", map[string][]string{"198.51.100.250": nil, ip: canaryHops})
		}},
		{"a router sends 100,000 routes past its limit", func(t *testing.T, e *hostileEnv) {
			flood := bgprouter.Start(t, bgprouter.Options{Address: "127.0.0.7", ASN: 64515, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
			peer := fmt.Sprintf("  - name: tor-flood\n    address: %s\n    port: %d\n    asn: %d\nhealthCheck:", flood.Address, flood.Port, flood.ASN)
			e.reload(t, strings.Replace(e.base, "healthCheck:", peer, 1), "applied")
			flood.WaitEstablished(t, waitTimeout)
			if err := flood.Originate(100_000); err != nil {
				t.Fatal(err)
			}
			// The session is closed once, counted; tor-a is untouched
			// (checkCanary).
			waitMetric(t, e.port, `baremetal_ccm_bgp_prefix_limit_exceeded_total{peer="tor-flood"} 1`)
			e.restoreBase(t, true)
		}},
		{"a password file that is a FIFO", func(t *testing.T, e *hostileEnv) {
			fifo := filepath.Join(t.TempDir(), "fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			e.reload(t, e.withPeerPassword(fifo), "invalid")
			e.waitLog(t, "want a regular file")
			e.restoreBase(t, false)
		}},
		{"a password file of 400 MiB", func(t *testing.T, e *hostileEnv) {
			huge := filepath.Join(t.TempDir(), "huge")
			f, err := os.Create(huge)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(400 << 20); err != nil { // sparse: no disk used
				t.Fatal(err)
			}
			f.Close()
			e.reload(t, e.withPeerPassword(huge), "invalid")
			e.waitLog(t, "longer than")
			e.restoreBase(t, false)
		}},
		{"a password file that appears after the config naming it", func(t *testing.T, e *hostileEnv) {
			late := filepath.Join(t.TempDir(), "late")
			e.reload(t, e.withPeerPassword(late), "invalid")
			writeFile(t, late, "secret\n")
			e.waitReloads(t, "applied")
			e.restoreBase(t, true)
		}},
		{"a reload the speaker cannot take", func(t *testing.T, e *hostileEnv) {
			// The new listen port is the CCM's own secure port: in use.
			bad := strings.Replace(e.base, "bgp:\n", fmt.Sprintf("bgp:\n  listenPort: %d\n", e.port), 1)
			bad = strings.Replace(bad, "pools:\n", "pools:\n- name: later\n  addresses: [203.0.113.200/29]\n  autoAssign: false\n", 1)
			e.reload(t, bad, "failed")
			// Nothing of the failed file is in force: not its pool.
			createService(t, e.c, lbservice.New("later", 80, withAnnotation("baremetal-ccm.io/pool", "later")))
			waitEvent(t, e.c, "later", "UnknownPool")
			e.restoreBase(t, false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, e)
			e.checkCanary(t)
		})
	}
}

func startHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	cp := controlplane.StartT(t)
	router := bgprouter.Start(t, bgprouter.Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	e := &hostileEnv{c: cp.Client, router: router, config: filepath.Join(t.TempDir(), "cloud.yaml"), base: lbConfig(router), reloads: map[string]int{}}
	writeFile(t, e.config, e.base)
	e.port = freeLoopbackPort(t)
	e.ccm = ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: e.config, Args: []string{
		fmt.Sprintf("--secure-port=%d", e.port), "--bind-address=127.0.0.1",
		"--authorization-always-allow-paths=/healthz,/metrics", "--authentication-skip-lookup",
	}})
	router.WaitEstablished(t, waitTimeout)
	registerNode(t, e.c, "node-1", "198.51.100.11,2001:db8:1::11")
	registerNode(t, e.c, "node-2", "198.51.100.12,2001:db8:1::12")
	for _, n := range []string{"node-1", "node-2"} {
		waitNode(t, e.c, n, "initialised", func(n *v1.Node) bool { return len(n.Status.Addresses) == 3 })
	}
	createService(t, e.c, lbservice.New("canary", 80))
	waitIngress(t, e.c, "canary", "203.0.113.1")
	waitRoutes(t, router, "canary", map[string][]string{"203.0.113.1": canaryHops})
	return e
}

// checkCanary: the canary keeps its address and route, and the CCM runs.
func (e *hostileEnv) checkCanary(t *testing.T) {
	t.Helper()
	if e.ccm.Exited() {
		t.Fatalf("the CCM exited; its log ends:\n%s", e.ccm.LogTail(40))
	}
	waitIngress(t, e.c, "canary", "203.0.113.1")
	waitRoutes(t, e.router, "canary after a hostile case", map[string][]string{"203.0.113.1": canaryHops})
	if strings.Contains(e.ccm.Log(), "panic") {
		t.Errorf("the CCM's log has a panic:\n%s", e.ccm.LogTail(40))
	}
}

// refused creates svc and expects an Event of reason naming want, no
// address, and no change at the router.
func (e *hostileEnv) refused(t *testing.T, svc *v1.Service, reason, want string) {
	t.Helper()
	before, err := e.router.Union()
	if err != nil {
		t.Fatal(err)
	}
	createService(t, e.c, svc)
	if msg := waitEvent(t, e.c, svc.Name, reason); !strings.Contains(msg, want) {
		t.Errorf("%s event %q does not say %q", reason, msg, want)
	}
	s, err := e.c.CoreV1().Services("default").Get(context.Background(), svc.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("refused Service %s got %v", svc.Name, s.Status.LoadBalancer.Ingress)
	}
	after, err := e.router.Union()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("a refused Service changed the router table:\nbefore %v\nafter  %v", before, after)
	}
}

// withPeerPassword is the base config with a second peer whose password
// is in file.
func (e *hostileEnv) withPeerPassword(file string) string {
	peer := fmt.Sprintf("  - name: tor-md5\n    address: 127.0.0.9\n    asn: 64514\n    passwordFile: %s\nhealthCheck:", file)
	return strings.Replace(e.base, "healthCheck:", peer, 1)
}

// reload writes content and waits until the CCM counts one more reload
// of result. The base config is put back when the case ends.
func (e *hostileEnv) reload(t *testing.T, content, result string) {
	t.Helper()
	writeFile(t, e.config, content)
	e.waitReloads(t, result)
}

// restoreBase writes the base config back; applied says whether another
// config was in force, whose replacement is then waited for.
func (e *hostileEnv) restoreBase(t *testing.T, applied bool) {
	t.Helper()
	writeFile(t, e.config, e.base)
	if applied {
		e.waitReloads(t, "applied")
	}
}

func (e *hostileEnv) waitReloads(t *testing.T, result string) {
	t.Helper()
	e.reloads[result]++
	waitMetric(t, e.port, fmt.Sprintf(`baremetal_ccm_config_reloads_total{result=%q} %d`, result, e.reloads[result]))
}

func (e *hostileEnv) waitLog(t *testing.T, want string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		return strings.Contains(e.ccm.Log(), want), nil
	})
	if err != nil {
		t.Fatalf("the CCM's log never says %q; it ends:\n%s", want, e.ccm.LogTail(20))
	}
}

func withAnnotation(k, v string) func(*v1.Service) {
	return func(s *v1.Service) { s.Annotations[k] = v }
}

func withCommunities(n int) func(*v1.Service) {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("65000:%d", i)
	}
	return withAnnotation("baremetal-ccm.io/bgp-communities", strings.Join(parts, ","))
}

func updateService(t *testing.T, c kubernetes.Interface, name string, f func(*v1.Service)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		s, err := c.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		f(s)
		_, err = c.CoreV1().Services("default").Update(ctx, s, metav1.UpdateOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("updating service %s: %v", name, err)
	}
}

// waitAnyIngress waits for the Service's first address and returns it.
func waitAnyIngress(t *testing.T, c kubernetes.Interface, name string) string {
	t.Helper()
	var ip string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		s, err := c.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		ip = s.Status.LoadBalancer.Ingress[0].IP
		return true, nil
	})
	if err != nil {
		t.Fatalf("service %s got no address", name)
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		t.Fatalf("service %s: address %q", name, ip)
	}
	return ip
}

// waitNodeEvent waits for an Event on the Node with this reason.
func waitNodeEvent(t *testing.T, c kubernetes.Interface, node, reason string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		evs, err := c.CoreV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"involvedObject.kind": "Node", "involvedObject.name": node, "reason": reason}.String()})
		return err == nil && len(evs.Items) > 0, nil
	})
	if err != nil {
		t.Fatalf("node %s: no %s event", node, reason)
	}
}
