package realnode

import (
	"bytes"
	"context"
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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	cloudproviderapi "k8s.io/cloud-provider/api"
	"k8s.io/utils/ptr"

	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
	"github.com/baremetal-ccm/baremetal-ccm/test/lab"
	"github.com/baremetal-ccm/baremetal-ccm/test/proc"
)

// Options configure [Up].
type Options struct {
	// Prefix starts the name of every namespace, of the root link and of
	// the nodes' cgroups; at most 6 bytes. Required.
	Prefix string
	// Dir holds the nodes' state, the logs and the configurations;
	// missing, empty or an earlier lab's (lab.ClaimDir). Required.
	Dir string
	// K8sBinDir holds kubeadm, kubelet, kubectl (hack/build-k8s.sh).
	K8sBinDir string
	// ContainerdBinDir holds containerd, ctr and the runc shim
	// (hack/build-containerd.sh).
	ContainerdBinDir string
	// CNIBinDir holds the bridge and host-local plugins (default: Debian's
	// /usr/lib/cni).
	CNIBinDir string
	// Runc is the runc binary (default: Debian's /usr/sbin/runc).
	Runc string
	// Images are the OCI archives every node imports: kubeadm's images,
	// the CCM's and the workload's (test/images).
	Images []string
	// ProbeBinary is test/agent/cmd/lbprobe (default: built into Dir/bin).
	ProbeBinary string
	// CCMTag is the CCM image tag installed first.
	CCMTag string
	// Conformance readies the cluster for Kubernetes' own e2e tests
	// (docs/conformance.md): kubeadm installs its CoreDNS addon (the
	// tests reach Services by name; its image and agnhost's must be among
	// Images, see BuildImages), Up waits for it, and the tester namespace
	// (TesterNamespace) reaches the apiserver and the VIPs. The lab's
	// own scenarios need none of it.
	Conformance bool
	// KeepOnFailure leaves a cluster that failed to come up as it is, for
	// a look at its logs and state; the caller takes it down ([Cleanup]).
	KeepOnFailure bool
	// Logf reports progress (default: nothing).
	Logf func(format string, args ...any)
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Cluster is a running real-node lab.
type Cluster struct {
	Opts      Options
	Racks     []*Rack
	Nodes     []*Node
	CoreNS    *fabric.Namespace
	Client    *fabric.Namespace
	ClientFRR *fabric.FRR
	// Tester is where e2e.test runs with Options.Conformance (tester.go).
	Tester     *fabric.Namespace
	Kubeconfig string
	Kube       kubernetes.Interface
	CCMTag     string

	repo        string
	probeBinary string
	passwords   map[string]string
	mu          sync.Mutex
	procs       []*proc.Proc
	lease       *lease // this machine's lab is ours while held
}

// Up builds the cluster: the network, the ToRs, the nodes' containerd,
// kubeadm init and joins, the pod network, and the CCM DaemonSet; it
// returns once every Node is initialised and Ready, kube-proxy and the CCM
// run on their nodes and every ToR has its sessions. On error, what was
// built is removed again.
func Up(ctx context.Context, o Options) (c *Cluster, err error) {
	if o.Prefix == "" || len(o.Prefix) > 6 || o.Dir == "" || o.K8sBinDir == "" || o.ContainerdBinDir == "" || len(o.Images) == 0 || o.CCMTag == "" {
		return nil, errors.New("realnode: Prefix (at most 6 bytes), Dir, K8sBinDir, ContainerdBinDir, Images and CCMTag are required")
	}
	if o.CNIBinDir == "" {
		o.CNIBinDir = "/usr/lib/cni"
	}
	if o.Runc == "" {
		o.Runc = "/usr/sbin/runc"
	}
	if err := lab.ClaimDir(o.Dir); err != nil {
		return nil, err
	}
	repo, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	c = &Cluster{Opts: o, repo: repo}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, c.LogTails(15))
			if !o.KeepOnFailure {
				_ = c.Down()
			}
		}
	}()
	c.probeBinary = o.ProbeBinary
	if c.probeBinary == "" {
		c.probeBinary = filepath.Join(o.Dir, "bin", "lbprobe")
		if err := lab.BuildBinary(ctx, repo, "./test/agent/cmd/lbprobe", c.probeBinary); err != nil {
			return c, err
		}
	}
	start := time.Now()
	o.logf("building the network (prefix %s)", o.Prefix)
	if err := c.buildNetwork(ctx); err != nil {
		return c, fmt.Errorf("realnode: network: %w", err)
	}
	if err := c.startRouters(); err != nil {
		return c, fmt.Errorf("realnode: routers: %w", err)
	}
	if o.Conformance {
		if err := c.buildTester(ctx); err != nil {
			return c, fmt.Errorf("realnode: network: %w", err)
		}
		if err := c.writeE2ERepoList(); err != nil {
			return c, fmt.Errorf("realnode: %w", err)
		}
	}
	o.logf("starting containerd on %d nodes and importing %d images", len(c.Nodes), len(o.Images))
	if err := parallel(c.Nodes, func(n *Node) error {
		if err := n.prepare(ctx); err != nil {
			return err
		}
		if err := n.StartContainerd(ctx); err != nil {
			return err
		}
		return n.ImportImages(ctx, o.Images)
	}); err != nil {
		return c, fmt.Errorf("realnode: nodes: %w", err)
	}
	if err := c.bootstrap(ctx); err != nil {
		return c, fmt.Errorf("realnode: kubeadm: %w", err)
	}
	o.logf("pod network")
	if err := c.waitPodCIDRs(ctx); err != nil {
		return c, err
	}
	o.logf("installing the CCM (%s:%s)", CCMImage, o.CCMTag)
	if err := c.InstallCCM(ctx, o.CCMTag); err != nil {
		return c, err
	}
	if err := c.WaitReady(ctx); err != nil {
		return c, err
	}
	o.logf("cluster ready after %s", time.Since(start).Round(time.Second))
	return c, nil
}

// connect makes the client for the admin kubeconfig kubeadm wrote.
func (c *Cluster) connect(ctx context.Context) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	c.Kube, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return waitFor(ctx, 2*time.Minute, func() error {
		_, err := c.Kube.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		return err
	})
}

// waitPodCIDRs waits for every Node's spec.podCIDR and installs its pod
// network.
func (c *Cluster) waitPodCIDRs(ctx context.Context) error {
	return waitFor(ctx, 5*time.Minute, func() error {
		for _, n := range c.Nodes {
			node, err := c.Kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if node.Spec.PodCIDR == "" {
				return fmt.Errorf("node %s has no pod CIDR yet", n.Name)
			}
			p, err := netip.ParsePrefix(node.Spec.PodCIDR)
			if err != nil {
				return fmt.Errorf("node %s: pod CIDR %q: %w", n.Name, node.Spec.PodCIDR, err)
			}
			if err := c.setPodCIDR(ctx, n, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// readyWait bounds the wait for the cluster: generous, a busy 2-core
// machine starts six nodes slowly.
const readyWait = 10 * time.Minute

// WaitReady waits until every Node is Ready and initialised by the CCM,
// kube-proxy and the CCM run ready on their nodes, and every ToR has its
// sessions with the replicas Established.
func (c *Cluster) WaitReady(ctx context.Context) error {
	c.Opts.logf("waiting for the Nodes, kube-proxy, the CCM and the BGP sessions")
	return waitFor(ctx, readyWait, func() error {
		for _, p := range c.allProcs() {
			if strings.Contains(p.Name, "-kubeadm-") {
				continue
			}
			if !p.Running() {
				return fmt.Errorf("%s exited: %s", p.Name, p.LogTail(20))
			}
		}
		nodes, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(nodes.Items) != len(c.Nodes) {
			return fmt.Errorf("%d nodes registered, want %d", len(nodes.Items), len(c.Nodes))
		}
		for _, n := range nodes.Items {
			if slices.ContainsFunc(n.Spec.Taints, func(t v1.Taint) bool { return t.Key == cloudproviderapi.TaintExternalCloudProvider }) {
				return fmt.Errorf("node %s not initialised yet", n.Name)
			}
			if !nodeReady(&n) {
				return fmt.Errorf("node %s not Ready", n.Name)
			}
		}
		for _, ds := range []string{"kube-proxy", "baremetal-cloud-controller-manager"} {
			d, err := c.Kube.AppsV1().DaemonSets("kube-system").Get(ctx, ds, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if d.Status.DesiredNumberScheduled == 0 || d.Status.NumberReady != d.Status.DesiredNumberScheduled || d.Status.UpdatedNumberScheduled != d.Status.DesiredNumberScheduled {
				return fmt.Errorf("daemonset %s: %d of %d ready, %d updated", ds, d.Status.NumberReady, d.Status.DesiredNumberScheduled, d.Status.UpdatedNumberScheduled)
			}
		}
		if c.Opts.Conformance {
			// kubeadm's addon: a Deployment named coredns.
			d, err := c.Kube.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if want := ptr.Deref(d.Spec.Replicas, 1); want == 0 || d.Status.ReadyReplicas != want {
				return fmt.Errorf("deployment coredns: %d of %d ready", d.Status.ReadyReplicas, want)
			}
		}
		// Pod networks are routed by the CCM's pod routes, via BGP.
		for _, n := range c.Nodes {
			for _, r := range c.Racks {
				if hops, _, err := r.PodRoutes(ctx, n.PodCIDR); err != nil || len(hops) == 0 {
					return fmt.Errorf("%s has no route for %s's pod CIDR %s (%v)", r.torName(), n.Name, n.PodCIDR, err)
				}
			}
		}
		for _, r := range c.Racks {
			for _, n := range c.controlPlane() {
				s, err := r.FRR.BGPNeighborState(ctx, n.Addr.String())
				if err != nil {
					return err
				}
				if s != "Established" {
					return fmt.Errorf("%s: session with %s is %s", r.torName(), n.Name, s)
				}
			}
		}
		return nil
	})
}

func nodeReady(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// LogTails returns the last n lines of every process's log: what a
// failure report needs.
func (c *Cluster) LogTails(n int) string {
	var b strings.Builder
	for _, p := range c.allProcs() {
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", p.Name, p.Log, p.LogTail(n))
	}
	return b.String()
}

// Restart restarts the whole cluster as a power cycle would: every
// node's processes (kubelet, pods with the control plane and the CCM,
// containerd, shims) are killed, then containerd and the kubelets start
// again; the kubelets start the static pods and the rest follows.
func (c *Cluster) Restart(ctx context.Context) error {
	for _, n := range c.Nodes {
		n.Kubelet.Kill()
	}
	if err := parallel(c.Nodes, func(n *Node) error {
		if err := killCgroupProcs(n.CgroupRoot()); err != nil {
			return err
		}
		n.Containerd.Kill()
		n.killShims()
		return nil
	}); err != nil {
		return err
	}
	c.Opts.logf("cluster stopped; starting containerd and the kubelets")
	return parallel(c.Nodes, func(n *Node) error {
		if err := n.StartContainerd(ctx); err != nil {
			return err
		}
		return n.Kubelet.Start()
	})
}

// Node returns the node named name.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// newProc registers a process of the lab (not started).
func (c *Cluster) newProc(name string, argv ...string) *proc.Proc {
	log := filepath.Join(c.Opts.Dir, "logs", name+".log")
	_ = os.MkdirAll(filepath.Dir(log), 0o755)
	p := proc.New(name, log, argv...)
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p
}

func (c *Cluster) allProcs() []*proc.Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.procs)
}

// Down stops every node (pods, kubelet, containerd, shims, mounts,
// cgroups) and router, and removes the namespaces, the root link and Dir.
// It may be called on a half-built cluster.
func (c *Cluster) Down() error {
	var errs []error
	// Kubelets first: none restarts a pod while the nodes go down.
	for _, n := range c.Nodes {
		if n.Kubelet != nil {
			n.Kubelet.Stop()
		}
	}
	errs = append(errs, parallelErrs(c.Nodes, (*Node).stop)...)
	for _, r := range c.Racks {
		r.StopFRR()
	}
	if c.ClientFRR != nil {
		c.ClientFRR.Stop()
	}
	for _, p := range c.allProcs() {
		p.Stop()
	}
	if err := Cleanup(c.Opts.Prefix, c.Opts.Dir); err != nil {
		errs = append(errs, err)
	}
	c.lease.release()
	return errors.Join(errs...)
}

// Cleanup removes what a cluster with this prefix left behind, also
// without a Cluster (after a crash): processes in its namespaces and
// cgroups, the cgroups, the namespaces, the root link, Dir and its lease.
func Cleanup(prefix, dir string) error {
	if prefix == "" {
		return errors.New("realnode: refusing to clean up without a prefix")
	}
	if err := lab.CheckDir(dir); err != nil {
		return err
	}
	var errs []error
	// The nodes' cgroups: every process in them is a pod of ours.
	if mounts, err := cgroupMounts(); err == nil {
		seen := map[string]bool{}
		for _, m := range mounts {
			ents, _ := os.ReadDir(m)
			for _, e := range ents {
				if e.IsDir() && strings.HasPrefix(e.Name(), prefix) && !seen[e.Name()] {
					seen[e.Name()] = true
					if err := removeCgroups("/" + e.Name()); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
	}
	ctx := context.Background()
	_, _ = fabric.Root.IP(ctx, "link", "del", prefix+"h")
	if err := fabric.Cleanup(prefix); err != nil {
		errs = append(errs, err)
	}
	if err := lab.RemoveDir(dir); err != nil {
		errs = append(errs, err)
	}
	// The lease last, and only once all is gone: what a failed cleanup
	// left is reaped again by the next lab.
	if len(errs) == 0 {
		if err := removeLease(prefix); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNamespaceProcs kills every process in the network namespace ns but
// except (all of them the node's: containerd, kubelet, shims, host-network
// pods, its mount holder).
func killNamespaceProcs(ns string, except int) {
	out, err := runCmd(context.Background(), "ip", "netns", "pids", ns)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != except {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// commandTimeout bounds every short command the lab runs.
const commandTimeout = 2 * time.Minute

func runCmd(ctx context.Context, argv ...string) ([]byte, error) {
	return runCmdInput(ctx, nil, argv...)
}

func runCmdInput(ctx context.Context, stdin []byte, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// parallel runs f for every node at once and returns the first error.
func parallel(nodes []*Node, f func(*Node) error) error {
	return errors.Join(parallelErrs(nodes, f)...)
}

func parallelErrs(nodes []*Node, f func(*Node) error) []error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(n)
		}()
	}
	wg.Wait()
	return slices.DeleteFunc(errs, func(e error) bool { return e == nil })
}
