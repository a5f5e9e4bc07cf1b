package realnode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
	"github.com/baremetal-ccm/baremetal-ccm/test/lab"
)

// NetserverImage is the workload's image (test/agent/cmd/netserver): it
// answers each request with the pod's name, its node and the client's
// address as the pod saw it.
const NetserverImage = ImageRepository + "/netserver:lab"

// Answer is what netserver answers.
type Answer struct {
	Pod    string `json:"pod"`
	Node   string `json:"node"`
	Client string `json:"client"`
}

// Netserver is a Deployment of netserver, spread one pod per node as far
// as the replicas go (control-plane nodes included).
func Netserver(namespace, name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: v1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					Tolerations:                   []v1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}},
					TopologySpreadConstraints: []v1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: v1.DoNotSchedule,
						LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
					}},
					Containers: []v1.Container{{
						Name:            "netserver",
						Image:           NetserverImage,
						ImagePullPolicy: v1.PullNever,
						Args:            []string{"--listen=:8080"},
						Ports:           []v1.ContainerPort{{ContainerPort: 8080, Name: "http"}},
						Env: []v1.EnvVar{
							{Name: "POD_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "NODE_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
						},
						ReadinessProbe: &v1.Probe{
							ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	return d
}

// OnWorkers keeps a Deployment's pods off the control-plane nodes, which
// kubeadm labels node.kubernetes.io/exclude-from-external-load-balancers:
// an externalTrafficPolicy: Local Service's pods there would get no
// traffic.
func OnWorkers(d *appsv1.Deployment) *appsv1.Deployment {
	d.Spec.Template.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
			MatchExpressions: []v1.NodeSelectorRequirement{{Key: "node-role.kubernetes.io/control-plane", Operator: v1.NodeSelectorOpDoesNotExist}},
		}}},
	}}
	return d
}

// LoadBalancerNodes returns the Nodes that may carry a VIP, sorted: those
// without the node.kubernetes.io/exclude-from-external-load-balancers
// label (kubeadm puts it on control-plane nodes).
func (c *Cluster) LoadBalancerNodes(ctx context.Context) ([]string, error) {
	l, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "!" + v1.LabelNodeExcludeBalancers})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range l.Items {
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out, nil
}

// LoadBalancer is a type: LoadBalancer Service on port 80 for the pods
// labelled app=selector.
func LoadBalancer(namespace, name, selector string, policy v1.ServiceExternalTrafficPolicy) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: v1.ServiceSpec{
			Type:                  v1.ServiceTypeLoadBalancer,
			ExternalTrafficPolicy: policy,
			Selector:              map[string]string{"app": selector},
			Ports:                 []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

// Apply creates or replaces a Deployment.
func (c *Cluster) ApplyDeployment(ctx context.Context, d *appsv1.Deployment) error {
	_, err := c.Kube.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = c.Kube.AppsV1().Deployments(d.Namespace).Update(ctx, d, metav1.UpdateOptions{})
	}
	return err
}

// Scale sets a Deployment's replicas.
func (c *Cluster) Scale(ctx context.Context, namespace, name string, replicas int32) error {
	// The Deployment controller writes the scale subresource's status
	// too: an update may meet a newer resourceVersion.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := c.Kube.AppsV1().Deployments(namespace).GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Replicas = replicas
		_, err = c.Kube.AppsV1().Deployments(namespace).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
		return err
	})
}

// WaitDeploymentReady waits until the Deployment's replicas are all ready
// and updated.
func (c *Cluster) WaitDeploymentReady(ctx context.Context, namespace, name string) error {
	return waitFor(ctx, 5*time.Minute, func() error {
		d, err := c.Kube.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := ptr.Deref(d.Spec.Replicas, 1)
		if d.Status.ObservedGeneration < d.Generation || d.Status.ReadyReplicas != want || d.Status.UpdatedReplicas != want || d.Status.Replicas != want {
			return fmt.Errorf("deployment %s: %d/%d ready", name, d.Status.ReadyReplicas, want)
		}
		return nil
	})
}

// WaitExternalIP waits for the Service's first ingress address.
func (c *Cluster) WaitExternalIP(ctx context.Context, namespace, name string) (netip.Addr, error) {
	var vip netip.Addr
	err := waitFor(ctx, 3*time.Minute, func() error {
		s, err := c.Kube.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("service %s/%s has no EXTERNAL-IP yet", namespace, name)
		}
		vip, err = netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		return err
	})
	return vip, err
}

// ReadyEndpointNodes returns the nodes holding a ready endpoint of the
// Service, from its EndpointSlices.
func (c *Cluster) ReadyEndpointNodes(ctx context.Context, namespace, name string) ([]string, error) {
	l, err := c.Kube.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return nil, err
	}
	var nodes []string
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			if e.NodeName != nil && ptr.Deref(e.Conditions.Ready, false) && !slices.Contains(nodes, *e.NodeName) {
				nodes = append(nodes, *e.NodeName)
			}
		}
	}
	slices.Sort(nodes)
	return nodes, nil
}

// NextHops returns the nodes the ToRs' kernels route vip to, sorted by
// name: the union over every rack.
func (c *Cluster) NextHops(ctx context.Context, vip netip.Addr) ([]string, error) {
	var names []string
	for _, r := range c.Racks {
		hops, err := r.NextHops(ctx, vip)
		if err != nil {
			return nil, err
		}
		for _, h := range hops {
			if n := c.nodeByAddr(h); n != nil {
				names = append(names, n.Name)
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// NextHops returns the ToR's kernel next hops for vip.
func (r *Rack) NextHops(ctx context.Context, vip netip.Addr) ([]netip.Addr, error) {
	routes, err := fabric.Routes(ctx, r.NS, netip.PrefixFrom(vip, vip.BitLen()))
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, rt := range routes {
		out = append(out, rt.Gateways()...)
	}
	return out, nil
}

func (c *Cluster) nodeByAddr(a netip.Addr) *Node {
	for _, n := range c.Nodes {
		if n.Addr == a {
			return n
		}
	}
	return nil
}

// Result is one request of the client loop, with netserver's answer.
type Result struct {
	lab.Result
	Answer Answer
}

// URL is the Service's address as the client requests it.
func URL(vip netip.Addr) string {
	return "http://" + net.JoinHostPort(vip.String(), strconv.Itoa(80)) + "/"
}

// ProbeCmd is a loop of count requests from the client namespace, each
// on a new connection, interval apart, each bounded by timeout.
func (c *Cluster) ProbeCmd(ctx context.Context, url string, count int, interval, timeout time.Duration) *exec.Cmd {
	return c.ProbeCmdIn(ctx, c.Client, url, count, interval, timeout)
}

// ProbeCmdIn is ProbeCmd from namespace ns (a ToR, to see its own ECMP).
func (c *Cluster) ProbeCmdIn(ctx context.Context, ns *fabric.Namespace, url string, count int, interval, timeout time.Duration) *exec.Cmd {
	args := []string{"netns", "exec", ns.Name, c.probeBinary, "--url=" + url, "--count=" + strconv.Itoa(count),
		"--interval=" + interval.String(), "--timeout=" + timeout.String()}
	// lbprobe bounds itself: count requests, each within timeout.
	return exec.CommandContext(ctx, "ip", args...)
}

// Probe runs a request loop and returns its results.
func (c *Cluster) Probe(ctx context.Context, url string, count int, interval, timeout time.Duration) ([]Result, error) {
	out, err := c.ProbeCmd(ctx, url, count, interval, timeout).Output()
	if err != nil {
		return nil, fmt.Errorf("lbprobe: %w", err)
	}
	return ParseResults(out)
}

// ParseResults reads lbprobe's lines and netserver's answers in them.
func ParseResults(out []byte) ([]Result, error) {
	rs, err := lab.ParseResults(out)
	if err != nil {
		return nil, err
	}
	res := make([]Result, len(rs))
	for i, r := range rs {
		res[i].Result = r
		if r.Err == "" {
			if err := json.Unmarshal([]byte(r.Node), &res[i].Answer); err != nil {
				return nil, fmt.Errorf("request %d: answer %q: %w", r.Seq, r.Node, err)
			}
		}
	}
	return res, nil
}

// Failed counts the failed requests.
func Failed(rs []Result) int {
	n := 0
	for _, r := range rs {
		if r.Err != "" {
			n++
		}
	}
	return n
}

// ProbeRun is a request loop running in the background.
type ProbeRun struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  []byte
	done chan error
}

// StartProbe starts a request loop in the background.
func (c *Cluster) StartProbe(ctx context.Context, url string, count int, interval, timeout time.Duration) (*ProbeRun, error) {
	r := &ProbeRun{cmd: c.ProbeCmd(ctx, url, count, interval, timeout), done: make(chan error, 1)}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := stdout.Read(buf)
			r.mu.Lock()
			r.out = append(r.out, buf[:n]...)
			r.mu.Unlock()
			if err != nil {
				break
			}
		}
		r.done <- r.cmd.Wait()
	}()
	return r, nil
}

// Answered is the number of requests finished so far.
func (r *ProbeRun) Answered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Count(r.out, []byte("\n"))
}

// WaitAnswered waits until n requests have finished.
func (r *ProbeRun) WaitAnswered(ctx context.Context, n int) error {
	return waitFor(ctx, 5*time.Minute, func() error {
		if got := r.Answered(); got < n {
			return fmt.Errorf("%d of %d requests answered", got, n)
		}
		return nil
	})
}

// Stop ends the loop early (lbprobe stops at SIGTERM) and returns its
// results.
func (r *ProbeRun) Stop() ([]Result, error) {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	return r.Wait()
}

// Wait waits for the loop's end and returns its results.
func (r *ProbeRun) Wait() ([]Result, error) {
	err := <-r.done
	r.done <- err
	r.mu.Lock()
	out := slices.Clone(r.out)
	r.mu.Unlock()
	rs, perr := ParseResults(out)
	if perr != nil {
		return rs, perr
	}
	if err != nil && len(rs) == 0 {
		return rs, fmt.Errorf("lbprobe: %w", err)
	}
	return rs, nil
}

// ReadyEndpointCounts returns how many ready endpoints of the Service each
// node holds, from its EndpointSlices.
func (c *Cluster) ReadyEndpointCounts(ctx context.Context, namespace, name string) (map[string]int, error) {
	l, err := c.Kube.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			if e.NodeName != nil && ptr.Deref(e.Conditions.Ready, false) {
				counts[*e.NodeName]++
			}
		}
	}
	return counts, nil
}

// FailedSummary describes up to n failed requests (sequence number, start
// in the machine's local time as ip monitor prints it, time taken, error)
// for a failure report.
func FailedSummary(rs []Result, n int) string {
	var b strings.Builder
	for _, r := range rs {
		if r.Err == "" {
			continue
		}
		if n == 0 {
			b.WriteString("\n  ...")
			break
		}
		n--
		fmt.Fprintf(&b, "\n  request %d started %s, after %.0f ms: %s", r.Seq, r.Start.Local().Format(routeTimeLayout), r.MS, r.Err)
	}
	return b.String()
}

// WaitKubeProxyEndpoints waits until kube-proxy on every node forwards the
// Service's port to n endpoints (the endpoint rules in its nat table, read
// with iptables-save in the node's network namespace): the Deployment
// being ready says nothing of when kube-proxy has caught up.
func (c *Cluster) WaitKubeProxyEndpoints(ctx context.Context, namespace, name, port string, n int) error {
	marker := fmt.Sprintf("--comment \"%s/%s:%s -> ", namespace, name, port)
	return waitFor(ctx, 3*time.Minute, func() error {
		for _, node := range c.Nodes {
			out, err := node.NS.Exec(ctx, "iptables-save", "-t", "nat")
			if err != nil {
				return err
			}
			got := 0
			for _, l := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(l, "-A KUBE-SVC-") && strings.Contains(l, marker) {
					got++
				}
			}
			if got != n {
				return fmt.Errorf("kube-proxy on %s forwards %s/%s to %d endpoints, want %d", node.Name, namespace, name, got, n)
			}
		}
		return nil
	})
}
