package deploy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/kubelet"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
)

// Generous for a busy 2-core machine; the controllers act within seconds.
const waitTimeout = 60 * time.Second

// leaseName is the CCM's default --leader-elect-resource-name; the Role in
// manifests/rbac.yaml names it.
const leaseName = "cloud-controller-manager"

// env is what a scenario gets: a real apiserver with the manifests applied,
// and the CCM running with the manifests' ServiceAccount, leader election on.
type env struct {
	CP *controlplane.ControlPlane
	// Admin acts as users and kubelets do.
	Admin kubernetes.Interface
	// Kubeconfig holds the ServiceAccount's token, as the CCM uses it.
	Kubeconfig string
	// CloudConfig is the CCM's cloud config file; writing it is a reload.
	CloudConfig string
	CCM         *ccm.Process
	// Router is the scenario's BGP router, if it asked for one.
	Router *bgprouter.Router
}

// scenario is a use of the CCM that must work with the manifests' RBAC:
// any request the ServiceAccount may not make shows as "forbidden" in the
// CCM's log, and the scenario's own checks fail if a controller could not
// do its work.
type scenario struct {
	name string
	// withRouter starts a GoBGP router, which peers with the CCM from
	// 127.0.0.1, before the CCM.
	withRouter bool
	// cloudConfig renders the CCM's config at start; r is the router, nil
	// without withRouter.
	cloudConfig func(r *bgprouter.Router) string
	// args are added to the CCM's (e.g. for a BGP router ID).
	args []string
	run  func(t *testing.T, e *env)
}

// scenarios run in turn, each against its own apiserver and CCM.
var scenarios = []scenario{
	{name: "nodes", cloudConfig: func(*bgprouter.Router) string { return nodesCloudConfig }, run: nodesScenario},
	{name: "load balancers", withRouter: true, cloudConfig: loadBalancerCloudConfig, run: loadBalancerScenario},
}

// TestCCMAsServiceAccount runs the real binary with a token of the
// manifests' ServiceAccount (TokenRequest API) and leader election on, as
// the DaemonSet does, through each scenario; then checks the secure port
// the probes use, and that nothing was forbidden.
func TestCCMAsServiceAccount(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			cp := controlplane.StartT(t)
			applyManifests(t, cp)
			kubeconfig := serviceAccountKubeconfig(t, cp, serviceAccount)
			var router *bgprouter.Router
			if sc.withRouter {
				router = bgprouter.Start(t, bgprouter.Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
			}
			cloudConfig := filepath.Join(t.TempDir(), "cloud.yaml")
			writeFile(t, cloudConfig, sc.cloudConfig(router))
			port := freePort(t)
			args := []string{
				// As in manifests/daemonset.yaml.
				"--leader-elect=true",
				"--use-service-account-credentials=false",
				"--bind-address=127.0.0.1",
				"--secure-port=" + strconv.Itoa(port),
				// In a pod these default to the in-cluster config, which
				// is the same ServiceAccount.
				"--authentication-kubeconfig=" + kubeconfig,
				"--authorization-kubeconfig=" + kubeconfig,
			}
			e := &env{CP: cp, Admin: cp.Client, Kubeconfig: kubeconfig, CloudConfig: cloudConfig, Router: router}
			e.CCM = ccm.Start(t, ccm.Options{Kubeconfig: kubeconfig, CloudConfig: cloudConfig, Args: append(args, sc.args...)})

			waitLeader(t, cp.Client)
			sc.run(t, e)
			checkSecurePort(t, cp, port)

			if e.CCM.Exited() {
				t.Errorf("the CCM exited:\n%s", e.CCM.LogTail(40))
			}
			var forbidden []string
			for _, line := range strings.Split(e.CCM.Log(), "\n") {
				// The secure port's own refusal of a request the test made
				// on purpose (checkSecurePort) is not the CCM being refused.
				if strings.Contains(line, `"Forbidden" URI=`) {
					continue
				}
				if strings.Contains(strings.ToLower(line), "forbidden") {
					forbidden = append(forbidden, line)
				}
			}
			if len(forbidden) > 0 {
				t.Errorf("the CCM was refused %d request(s) with the manifests' RBAC (add the permission to manifests/rbac.yaml, the allow-list in rbac_test.go and docs/reference/manifests.md):\n%s",
					len(forbidden), strings.Join(forbidden, "\n"))
			}
		})
	}
}

// waitLeader waits until a replica holds the leader election Lease.
func waitLeader(t *testing.T, c kubernetes.Interface) {
	t.Helper()
	var holder string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		l, err := c.CoordinationV1().Leases(namespace).Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		return holder != "", nil
	})
	if err != nil {
		t.Fatalf("no holder of Lease %s/%s after %s: leader election did not succeed", namespace, leaseName, waitTimeout)
	}
}

// checkSecurePort checks what the DaemonSet's probes and a metrics scraper
// rely on: /healthz answers without credentials, and /metrics authenticates
// (client certificates via the extension-apiserver-authentication
// ConfigMap, tokens via TokenReview) and authorizes (SubjectAccessReview)
// a scraper bound to the monitoring component's ClusterRole.
func checkSecurePort(t *testing.T, cp *controlplane.ControlPlane, port int) {
	t.Helper()
	ctx := context.Background()
	// A scraper: a ServiceAccount bound to the component's metrics reader,
	// as docs/operations say to bind Prometheus'.
	const scraper = "deploy-test-scraper"
	if _, err := cp.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: scraper}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := metricsReaderRole(t, renderWithMonitoring(t))
	if _, err := cp.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: scraper},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: scraper, Namespace: namespace}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	scraperToken := serviceAccountToken(t, cp, scraper)
	admin, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	adminCert, err := tls.X509KeyPair(admin.CertData, admin.KeyData)
	if err != nil {
		t.Fatal(err)
	}

	base := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for _, tc := range []struct {
		name, path string
		token      string
		cert       *tls.Certificate
		want       int
	}{
		{"probe: no credentials", "/healthz", "", nil, http.StatusOK},
		{"no credentials", "/metrics", "", nil, http.StatusForbidden},
		{"scraper's token", "/metrics", scraperToken, nil, http.StatusOK},
		{"admin's client certificate", "/metrics", "", &adminCert, http.StatusOK},
	} {
		// The CCM's serving certificate is self-signed (in memory), as
		// in the DaemonSet; the kubelet's probes do not verify it either.
		tlsCfg := &tls.Config{InsecureSkipVerify: true}
		if tc.cert != nil {
			tlsCfg.Certificates = []tls.Certificate{*tc.cert}
		}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
		var code int
		var body string
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := client.Do(req)
			if err != nil {
				body = err.Error()
				return false, nil
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			code, body = resp.StatusCode, string(b)
			return code == tc.want, nil
		})
		if err != nil {
			t.Errorf("secure port, %s: GET %s: got %d %q, want %d", tc.name, tc.path, code, body, tc.want)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const nodesCloudConfig = `
region: lab
racks:
- name: rack-a
  zone: zone-a
  subnets: [198.51.100.0/25]
machines:
- name: node-a1
  type: c3.small
- name: node-a2
`

// nodesScenario is the life of Nodes as the node controllers see it: a
// kubelet with --cloud-provider=external registers, the CCM initialises
// the Node (get, update, patch nodes and nodes/status, Events); its machine
// is shut down (the lifecycle controller's taint), and another one leaves
// the inventory (its Node is deleted).
func nodesScenario(t *testing.T, e *env) {
	c := e.Admin
	registerNode(t, c, "node-a1", "198.51.100.11")
	registerNode(t, c, "node-a2", "198.51.100.12")
	for _, name := range []string{"node-a1", "node-a2"} {
		waitNode(t, c, name, "initialised", func(n *v1.Node) bool {
			return n.Spec.ProviderID == "baremetal://lab/"+name &&
				n.Labels[v1.LabelTopologyZone] == "zone-a" &&
				!hasTaint(n, cloudproviderapi.TaintExternalCloudProvider)
		})
	}

	writeFile(t, e.CloudConfig, nodesCloudConfig+"  state: shutdown\n")
	setReady(t, c, "node-a2", v1.ConditionFalse)
	waitNode(t, c, "node-a2", "shutdown taint", func(n *v1.Node) bool { return hasTaint(n, cloudproviderapi.TaintNodeShutdown) })

	writeFile(t, e.CloudConfig, strings.TrimSuffix(nodesCloudConfig, "- name: node-a2\n"))
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Nodes().Get(ctx, "node-a2", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("node-a2, gone from the inventory and NotReady, was not deleted within %s", waitTimeout)
	}
	// The controllers report through Events: at least one was written.
	events, err := c.CoreV1().Events(metav1.NamespaceAll).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.Items) == 0 {
		t.Errorf("no Event was recorded")
	}
}

func loadBalancerCloudConfig(r *bgprouter.Router) string {
	return `
region: lab
racks:
- name: rack-a
  subnets: [198.51.100.0/25]
pools:
- name: public
  addresses: [203.0.113.0/28]
` + r.SpeakerConfig() + `healthCheck:
  enabled: false
`
}

// loadBalancerScenario is the life of a LoadBalancer Service as the
// service controller and the announcer see it: the leader allocates and
// writes the status and the finalizer (services, services/status, Events),
// every replica announces from Services, Nodes and EndpointSlices; the
// delete withdraws the VIP and removes the finalizer.
func loadBalancerScenario(t *testing.T, e *env) {
	c := e.Admin
	ctx := context.Background()
	e.Router.WaitEstablished(t, waitTimeout)
	registerNode(t, c, "node-a1", "198.51.100.11")
	registerNode(t, c, "node-a2", "198.51.100.12")
	for _, name := range []string{"node-a1", "node-a2"} {
		waitNode(t, c, name, "initialised", func(n *v1.Node) bool {
			return n.Spec.ProviderID != "" && !hasTaint(n, cloudproviderapi.TaintExternalCloudProvider)
		})
	}

	svc := lbservice.New("web", 80)
	if _, err := c.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *v1.Service
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		s, err := c.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		got = s
		return len(s.Status.LoadBalancer.Ingress) > 0, nil
	})
	if err != nil {
		t.Fatalf("service web: ingress %v, want an address from 203.0.113.0/28", got.Status.LoadBalancer.Ingress)
	}
	vip := got.Status.LoadBalancer.Ingress[0].IP
	if !strings.HasPrefix(vip, "203.0.113.") {
		t.Errorf("service web: EXTERNAL-IP got %s, want one from 203.0.113.0/28", vip)
	}
	if len(got.Finalizers) == 0 {
		t.Errorf("service web: no finalizer, want the service controller's")
	}
	want := "[198.51.100.11 198.51.100.12]"
	waitRouter(t, e.Router, vip, want)
	// A node leaves the VIP: the change is reported with an Event (the
	// first announcement has only the condition).
	kubelet.SetReady(t, c, "node-a2", v1.ConditionFalse)
	waitRouter(t, e.Router, vip, "[198.51.100.11]")

	if err := c.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRouter(t, e.Router, vip, "[]")
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		got, err = c.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("service web: not gone %s after the delete; finalizers %v", waitTimeout, got.Finalizers)
	}
	// The change of the announcement is reported with an Event (create,
	// patch events).
	events, err := c.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, ev := range events.Items {
		reasons = append(reasons, ev.Reason)
	}
	if !slices.Contains(reasons, "Announced") {
		t.Errorf("events of the Service: got reasons %v, want one Announced", reasons)
	}
}

// waitRouter waits until the router's next hops for vip are want (as
// fmt prints a sorted []netip.Addr; "[]" is withdrawn).
func waitRouter(t *testing.T, r *bgprouter.Router, vip, want string) {
	t.Helper()
	var got string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		u, err := r.Union()
		if err != nil {
			return false, err
		}
		got = "[]"
		for p, hops := range u {
			if p.Addr().String() == vip && len(hops) > 0 {
				got = fmt.Sprint(hops)
			}
		}
		return got == want, nil
	})
	if err != nil {
		t.Fatalf("router: next hops of %s got %s, want %s", vip, got, want)
	}
}

// Shorthands for the kubelet's part and the ConfigMap's.
var (
	registerNode = kubelet.Register
	setReady     = kubelet.SetReady
	waitNode     = kubelet.WaitNode
	hasTaint     = kubelet.HasTaint
	writeFile    = ccm.WriteConfig
)
