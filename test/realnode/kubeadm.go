package realnode

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// The lab's overlay of hack/kubeadm/*.yaml changes only addresses, names
// and the image repository; anything else a real node needs belongs in
// those files. The command lines add what a machine without systemd and
// with cgroup v1 needs (docs/real-cluster.md).

// kubeadmDoc is one YAML document of a kubeadm configuration file.
type kubeadmDoc map[string]any

// readKubeadmDocs reads the repository's kubeadm configuration file.
func readKubeadmDocs(path string) ([]kubeadmDoc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var docs []kubeadmDoc
	for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripComments(part)) == "" {
			continue
		}
		var d kubeadmDoc
		if err := yaml.Unmarshal([]byte(part), &d); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		docs = append(docs, d)
	}
	return docs, nil
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// set sets the value at path (map keys), which must exist already unless
// create: the overlay changes values, never the file's shape.
func (d kubeadmDoc) set(v any, create bool, path ...string) error {
	m := map[string]any(d)
	for i, k := range path {
		if i == len(path)-1 {
			if _, ok := m[k]; !ok && !create {
				return fmt.Errorf("%s: no field %s", d["kind"], strings.Join(path, "."))
			}
			m[k] = v
			return nil
		}
		next, ok := m[k].(map[string]any)
		if !ok {
			if !create {
				return fmt.Errorf("%s: no field %s", d["kind"], strings.Join(path[:i+1], "."))
			}
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	return nil
}

// setArg sets the value of the named argument in a list of {name, value}.
func (d kubeadmDoc) setArg(name, value string, create bool, path ...string) error {
	m := map[string]any(d)
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			if !create {
				return fmt.Errorf("%s: no field %s", d["kind"], k)
			}
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	last := path[len(path)-1]
	args, _ := m[last].([]any)
	for _, a := range args {
		if am, ok := a.(map[string]any); ok && am["name"] == name {
			am["value"] = value
			return nil
		}
	}
	if !create {
		return fmt.Errorf("%s: no argument %s in %s", d["kind"], name, strings.Join(path, "."))
	}
	m[last] = append(args, map[string]any{"name": name, "value": value})
	return nil
}

func renderDocs(docs []kubeadmDoc) ([]byte, error) {
	var b bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			b.WriteString("---\n")
		}
		y, err := yaml.Marshal(d)
		if err != nil {
			return nil, err
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}

// controlPlaneEndpoint is the first control-plane node's apiserver: the
// lab has no load balancer in front of the apiservers (docs/real-cluster.md).
func (c *Cluster) controlPlaneEndpoint() string { return c.first().Addr.String() + ":6443" }

func (c *Cluster) first() *Node { return c.Nodes[0] }

// nodeRegistration points a configuration at node n.
func nodeRegistration(d kubeadmDoc, n *Node) error {
	if err := d.set(n.Name, false, "nodeRegistration", "name"); err != nil {
		return err
	}
	return d.setArg("node-ip", n.Addr.String(), false, "nodeRegistration", "kubeletExtraArgs")
}

// initConfig is hack/kubeadm/init.yaml for the first control-plane node.
func (c *Cluster) initConfig(n *Node) ([]byte, error) {
	docs, err := readKubeadmDocs(filepath.Join(c.repo, "hack", "kubeadm", "init.yaml"))
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		switch d["kind"] {
		case "InitConfiguration":
			if err := nodeRegistration(d, n); err != nil {
				return nil, err
			}
			if err := d.set(n.Addr.String(), false, "localAPIEndpoint", "advertiseAddress"); err != nil {
				return nil, err
			}
		case "ClusterConfiguration":
			for _, s := range []struct {
				path []string
				v    string
			}{
				{[]string{"controlPlaneEndpoint"}, c.controlPlaneEndpoint()},
				{[]string{"clusterName"}, "lab"},
				{[]string{"networking", "podSubnet"}, PodNet.String()},
				{[]string{"networking", "serviceSubnet"}, ServiceNet.String()},
			} {
				if err := d.set(s.v, false, s.path...); err != nil {
					return nil, err
				}
			}
			if err := d.set(ImageRepository, true, "imageRepository"); err != nil {
				return nil, err
			}
			// The size of each node's share of the pod network: the
			// lab's pod network is a /24 of documentation space.
			if err := d.setArg("node-cidr-mask-size", fmt.Sprint(NodeMaskSize), true, "controllerManager", "extraArgs"); err != nil {
				return nil, err
			}
		}
	}
	return renderDocs(docs)
}

// joinInfo is what joining needs from the first control-plane node.
type joinInfo struct {
	Token, CAHash, CertificateKey string
}

// joinConfig is hack/kubeadm/join-worker.yaml or join-control-plane.yaml
// for node n.
func (c *Cluster) joinConfig(n *Node, ji joinInfo) ([]byte, error) {
	file := "join-worker.yaml"
	if n.ControlPlane {
		file = "join-control-plane.yaml"
	}
	docs, err := readKubeadmDocs(filepath.Join(c.repo, "hack", "kubeadm", file))
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		if d["kind"] != "JoinConfiguration" {
			continue
		}
		if err := nodeRegistration(d, n); err != nil {
			return nil, err
		}
		for _, s := range []struct {
			path []string
			v    any
		}{
			{[]string{"discovery", "bootstrapToken", "apiServerEndpoint"}, c.controlPlaneEndpoint()},
			{[]string{"discovery", "bootstrapToken", "token"}, ji.Token},
			{[]string{"discovery", "bootstrapToken", "caCertHashes"}, []any{ji.CAHash}},
		} {
			if err := d.set(s.v, false, s.path...); err != nil {
				return nil, err
			}
		}
		if n.ControlPlane {
			if err := d.set(n.Addr.String(), false, "controlPlane", "localAPIEndpoint", "advertiseAddress"); err != nil {
				return nil, err
			}
			if err := d.set(ji.CertificateKey, false, "controlPlane", "certificateKey"); err != nil {
				return nil, err
			}
		}
	}
	return renderDocs(docs)
}

// kubeadmIgnoredPreflight are the preflight checks this machine fails for
// reasons of the machine, not of the cluster (docs/real-cluster.md).
var kubeadmIgnoredPreflight = []string{
	"SystemVerification", // cgroup v1 and a kernel config kubeadm cannot read
	"Swap",
	"FileContent--proc-sys-net-bridge-bridge-nf-call-iptables",
}

// kubeadm runs kubeadm with args inside node n, starting the kubelet once
// kubeadm has written its configuration, as systemd would; it returns
// kubeadm's output.
func (c *Cluster) kubeadm(ctx context.Context, n *Node, name string, args ...string) (string, error) {
	p := c.newProc(n.Name+"-kubeadm-"+name, n.Command(append([]string{"env", c.pathEnv(), filepath.Join(c.Opts.K8sBinDir, "kubeadm")}, args...)...)...)
	if err := p.Start(); err != nil {
		return "", err
	}
	kubeletErr := make(chan error, 1)
	go func() { kubeletErr <- n.StartKubelet(ctx) }()
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Stop()
		return p.LogTail(40), ctx.Err()
	}
	out, _ := os.ReadFile(p.Log)
	if err := p.ExitError(); err != nil {
		return string(out), fmt.Errorf("%s: kubeadm %s: %w\n%s", n.Name, name, err, p.LogTail(40))
	}
	if err := <-kubeletErr; err != nil {
		return string(out), err
	}
	return string(out), nil
}

var (
	joinTokenRE = regexp.MustCompile(`--token\s+(\S+)`)
	caHashRE    = regexp.MustCompile(`--discovery-token-ca-cert-hash\s+(\S+)`)
	certKeyRE   = regexp.MustCompile(`(?m)^([0-9a-f]{64})\s*$`)
)

// bootstrap runs kubeadm init on the first control-plane node and joins
// the others, control-plane nodes first.
func (c *Cluster) bootstrap(ctx context.Context) error {
	first := c.first()
	cfg, err := c.initConfig(first)
	if err != nil {
		return err
	}
	if err := first.WriteFile(ctx, "/etc/kubernetes/lab/init.yaml", cfg); err != nil {
		return err
	}
	c.Opts.logf("kubeadm init on %s", first.Name)
	args := []string{"init", "--config=/etc/kubernetes/lab/init.yaml", "--ignore-preflight-errors=" + strings.Join(kubeadmIgnoredPreflight, ",")}
	if !c.Opts.Conformance {
		// Nothing in the lab's own scenarios resolves a name; the
		// CoreDNS image costs a build (docs/real-cluster.md).
		args = append(args, "--skip-phases=addon/coredns")
	}
	if _, err := c.kubeadm(ctx, first, "init", args...); err != nil {
		return err
	}
	c.Kubeconfig = first.path("etc", "kubernetes", "admin.conf")
	if err := c.connect(ctx); err != nil {
		return err
	}
	out, err := first.Exec(ctx, filepath.Join(c.Opts.K8sBinDir, "kubeadm"), "token", "create", "--print-join-command")
	if err != nil {
		return fmt.Errorf("kubeadm token create: %w\n%s", err, out)
	}
	var ji joinInfo
	if m := joinTokenRE.FindSubmatch(out); m != nil {
		ji.Token = string(m[1])
	}
	if m := caHashRE.FindSubmatch(out); m != nil {
		ji.CAHash = string(m[1])
	}
	out, err = first.Exec(ctx, filepath.Join(c.Opts.K8sBinDir, "kubeadm"), "init", "phase", "upload-certs", "--upload-certs", "--config=/etc/kubernetes/lab/init.yaml")
	if err != nil {
		return fmt.Errorf("kubeadm init phase upload-certs: %w\n%s", err, out)
	}
	if m := certKeyRE.FindSubmatch(out); m != nil {
		ji.CertificateKey = string(m[1])
	}
	if ji.Token == "" || ji.CAHash == "" || ji.CertificateKey == "" {
		return fmt.Errorf("kubeadm: no join token, CA hash or certificate key in its output:\n%s", out)
	}
	join := func(n *Node) error {
		cfg, err := c.joinConfig(n, ji)
		if err != nil {
			return err
		}
		if err := n.WriteFile(ctx, "/etc/kubernetes/lab/join.yaml", cfg); err != nil {
			return err
		}
		c.Opts.logf("kubeadm join on %s", n.Name)
		_, err = c.kubeadm(ctx, n, "join", "join", "--config=/etc/kubernetes/lab/join.yaml",
			"--ignore-preflight-errors="+strings.Join(kubeadmIgnoredPreflight, ","))
		return err
	}
	// Control-plane nodes one at a time (each adds an etcd member), then
	// the workers together.
	for _, n := range c.Nodes[1:] {
		if n.ControlPlane {
			if err := join(n); err != nil {
				return err
			}
		}
	}
	return parallel(c.Nodes[1:], func(n *Node) error {
		if n.ControlPlane {
			return nil
		}
		return join(n)
	})
}

// pathEnv puts the Kubernetes binaries on PATH, where kubeadm looks for
// the kubelet (a package manager would have put it in /usr/bin).
func (c *Cluster) pathEnv() string {
	return "PATH=" + c.Opts.K8sBinDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// waitFor polls f with the lab's generous bound.
func waitFor(ctx context.Context, timeout time.Duration, f func() error) error {
	return fabric.Eventually(ctx, timeout, 250*time.Millisecond, f)
}
