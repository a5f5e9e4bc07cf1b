package realnode

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
	"github.com/baremetal-ccm/baremetal-ccm/test/proc"
)

// Node is one machine: a network namespace and a private mount namespace
// (held by a sleeping process) in which its containerd and kubelet run.
//
// Inside the mount namespace: /run is a tmpfs (runc state, shim sockets,
// pod network namespaces); /var/lib and /var/log are the node's own
// directories (containerd, kubelet, etcd, CNI state; pod logs); /etc is an
// overlay of the host's /etc whose writes (/etc/kubernetes, /etc/cni,
// /etc/containerd) land in the node's directory; and the kernel tunables
// the kubelet sets are files of the node's, so the host's sysctls never
// change.
type Node struct {
	NodePlan
	Rack *Rack
	NS   *fabric.Namespace
	Addr netip.Addr
	// Dir holds the node's state on the host.
	Dir string
	// PodCIDR once kube-controller-manager assigned it.
	PodCIDR netip.Prefix

	holder     *proc.Proc
	Containerd *proc.Proc
	Kubelet    *proc.Proc
	cluster    *Cluster
}

// kernelTunables are the values the kubelet wants
// (pkg/kubelet/cm setupKernelTunables); each is a file of the node's
// bind-mounted over /proc/sys, so the kubelet reads its value and writes
// into the file.
var kernelTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

func (n *Node) path(parts ...string) string {
	return filepath.Join(append([]string{n.Dir}, parts...)...)
}

// CgroupRoot is the kubelet's cgroupRoot: pods' cgroups live below it in
// every hierarchy.
func (n *Node) CgroupRoot() string { return "/" + n.cluster.Opts.Prefix + n.Name }

// mountScript prepares the private mount namespace, then sleeps: the
// sleeping process holds the namespace until it is killed.
func (n *Node) mountScript() string {
	var b strings.Builder
	b.WriteString("set -e\n")
	// A machine has a hostname of its own: the kubelet registers under
	// it, and host-network pods (the CCM) see it.
	fmt.Fprintf(&b, "hostname %q\n", n.Name)
	fmt.Fprintf(&b, "mount -t tmpfs -o mode=0755 tmpfs /run\nmkdir -p /run/netns /run/containerd /run/xtables\n")
	fmt.Fprintf(&b, "mount --bind %q /var/lib\nmount --bind %q /var/log\n", n.path("varlib"), n.path("varlog"))
	fmt.Fprintf(&b, "mount -t overlay overlay -o lowerdir=/etc,upperdir=%s,workdir=%s /etc\n", n.path("etc"), n.path("etc-work"))
	// The machines' names resolve, as a data centre's DNS would have them.
	for _, o := range n.cluster.Nodes {
		fmt.Fprintf(&b, "echo %q >> /etc/hosts\n", o.Addr.String()+" "+o.Name)
	}
	for k := range kernelTunables {
		fmt.Fprintf(&b, "mount --bind %q /proc/sys/%s\n", n.path("sysctl", strings.ReplaceAll(k, "/", ".")), k)
	}
	b.WriteString("exec sleep infinity\n")
	return b.String()
}

// prepare creates the node's directories and cgroups and its mount
// namespace.
func (n *Node) prepare(ctx context.Context) error {
	n.Dir = filepath.Join(n.cluster.Opts.Dir, "nodes", n.Name)
	for _, d := range []string{"varlib", "varlog", "etc", "etc-work", "sysctl"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	for k, v := range kernelTunables {
		if err := os.WriteFile(n.path("sysctl", strings.ReplaceAll(k, "/", ".")), []byte(v+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(n.path("etc", "containerd"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(n.path("etc", "containerd", "config.toml"), []byte(n.containerdConfig()), 0o644); err != nil {
		return err
	}
	if err := createCgroups(n.CgroupRoot()); err != nil {
		return err
	}
	n.holder = n.cluster.newProc(n.Name+"-mounts",
		"nsenter", "--net=/run/netns/"+n.NS.Name, "--",
		"unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", n.mountScript())
	if err := n.holder.Start(); err != nil {
		return err
	}
	// The mounts are in place once the holder sleeps.
	return fabric.Eventually(ctx, time.Minute, 50*time.Millisecond, func() error {
		if !n.holder.Running() {
			return fmt.Errorf("%s: mount namespace failed: %s", n.Name, n.holder.LogTail(10))
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", n.holder.PID()))
		if err != nil || strings.TrimSpace(string(b)) != "sleep" {
			return fmt.Errorf("%s: mount namespace not ready", n.Name)
		}
		return nil
	})
}

// Command returns argv to run inside the node (its network and mount
// namespaces).
func (n *Node) Command(args ...string) []string {
	return append([]string{"nsenter", "--target", strconv.Itoa(n.holder.PID()), "--mount", "--uts", "--net", "--"}, args...)
}

// Exec runs a command inside the node and returns its combined output.
func (n *Node) Exec(ctx context.Context, args ...string) ([]byte, error) {
	return runCmd(ctx, n.Command(args...)...)
}

// WriteFile writes a file inside the node's mount namespace (its /etc is
// an overlay, whose upper directory must not be written from outside).
func (n *Node) WriteFile(ctx context.Context, path string, data []byte) error {
	_, err := runCmdInput(ctx, data, n.Command("/bin/sh", "-c", `mkdir -p "$(dirname "$1")" && cat > "$1"`, "sh", path)...)
	return err
}

func (n *Node) containerdConfig() string {
	o := n.cluster.Opts
	return fmt.Sprintf(`# The lab node %[1]s's containerd (docs/real-cluster.md).
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "%[2]s/pause:3.10.2"

[plugins.'io.containerd.cri.v1.runtime']
  # The machine's bounding set lacks CAP_SYS_RESOURCE: runc cannot lower
  # its own oom_score_adj (NOTES-realnode.md).
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["%[3]s"]
    conf_dir = "/etc/cni/net.d"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "%[4]s"
      SystemdCgroup = false
`, n.Name, ImageRepository, o.CNIBinDir, o.Runc)
}

// StartContainerd starts the node's containerd and waits for its socket.
func (n *Node) StartContainerd(ctx context.Context) error {
	o := n.cluster.Opts
	if n.Containerd == nil {
		n.Containerd = n.cluster.newProc(n.Name+"-containerd",
			n.Command("env", "PATH="+o.ContainerdBinDir+":/usr/sbin:/usr/bin:/sbin:/bin",
				filepath.Join(o.ContainerdBinDir, "containerd"), "--config", "/etc/containerd/config.toml")...)
	}
	if err := n.Containerd.Start(); err != nil {
		return err
	}
	return fabric.Eventually(ctx, 2*time.Minute, 200*time.Millisecond, func() error {
		if !n.Containerd.Running() {
			return fmt.Errorf("%s: containerd exited: %s", n.Name, n.Containerd.LogTail(20))
		}
		_, err := n.Ctr(ctx, "version")
		return err
	})
}

// Ctr runs ctr against the node's containerd in the k8s.io namespace.
func (n *Node) Ctr(ctx context.Context, args ...string) ([]byte, error) {
	return n.Exec(ctx, append([]string{filepath.Join(n.cluster.Opts.ContainerdBinDir, "ctr"),
		"--address", "/run/containerd/containerd.sock", "--namespace", "k8s.io"}, args...)...)
}

// ImportImages loads OCI archives into the node's containerd.
func (n *Node) ImportImages(ctx context.Context, archives []string) error {
	for _, a := range archives {
		if out, err := n.Ctr(ctx, "images", "import", "--local", a); err != nil {
			// --local does not exist on every ctr: retry without it.
			if out2, err2 := n.Ctr(ctx, "images", "import", a); err2 != nil {
				return fmt.Errorf("%s: importing %s: %w\n%s\n%s", n.Name, a, err2, out, out2)
			}
		}
	}
	return nil
}

// kubeadmFlags reads KUBELET_KUBEADM_ARGS from the kubeadm-flags.env that
// kubeadm init or join wrote.
func (n *Node) kubeadmFlags() ([]string, error) {
	b, err := os.ReadFile(n.path("varlib", "kubelet", "kubeadm-flags.env"))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "KUBELET_KUBEADM_ARGS="); ok {
			return strings.Fields(strings.Trim(v, `"`)), nil
		}
	}
	return nil, fmt.Errorf("%s: no KUBELET_KUBEADM_ARGS in kubeadm-flags.env", n.Name)
}

// kubeletArgs is the kubelet's command line: what kubeadm's systemd
// drop-in (10-kubeadm.conf) would run, plus this machine's quirks.
func (n *Node) kubeletArgs() ([]string, error) {
	flags, err := n.kubeadmFlags()
	if err != nil {
		return nil, err
	}
	args := []string{filepath.Join(n.cluster.Opts.K8sBinDir, "kubelet"),
		"--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
		"--kubeconfig=/etc/kubernetes/kubelet.conf",
		"--config=/var/lib/kubelet/config.yaml"}
	args = append(args, flags...)
	// The machine, not the cluster: no systemd (cgroupfs), cgroup v1, and
	// one cgroup root per node (docs/real-cluster.md). Every node's
	// filesystem is the shared host's disk, which other work fills: the
	// default eviction (imagefs.available<15%) and image garbage
	// collection (above 85% used) would measure that, taint every node
	// with disk-pressure and delete the imported images, which cannot be
	// pulled again. Memory stays guarded as usual.
	return append(args, "--cgroup-driver=cgroupfs", "--fail-cgroupv1=false", "--cgroup-root="+n.CgroupRoot(),
		"--eviction-hard=memory.available<100Mi,nodefs.available<1%,imagefs.available<1%,nodefs.inodesFree<1%",
		"--image-gc-high-threshold=100", "--image-gc-low-threshold=99"), nil
}

// StartKubelet waits for kubeadm to have written the kubelet's files,
// then starts the kubelet as kubeadm's systemd unit would.
func (n *Node) StartKubelet(ctx context.Context) error {
	if n.Kubelet != nil {
		return n.Kubelet.Start()
	}
	var args []string
	err := fabric.Eventually(ctx, 5*time.Minute, 200*time.Millisecond, func() error {
		if _, err := os.Stat(n.path("varlib", "kubelet", "config.yaml")); err != nil {
			return err
		}
		var err error
		args, err = n.kubeletArgs()
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: kubeadm wrote no kubelet configuration: %w", n.Name, err)
	}
	n.Kubelet = n.cluster.newProc(n.Name+"-kubelet", n.Command(args...)...)
	return n.Kubelet.Start()
}

// KillProcesses kills the node's processes named comm (a container's
// program, found in the node's cgroups).
func (n *Node) KillProcesses(comm string) error {
	pids, err := cgroupPIDs(n.CgroupRoot())
	if err != nil {
		return err
	}
	found := 0
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			found++
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if found == 0 {
		return fmt.Errorf("%s: no %s process", n.Name, comm)
	}
	return nil
}

// killShims kills the processes left in the node's namespaces but its
// mount holder: the runc shims, which outlive containerd.
func (n *Node) killShims() { killNamespaceProcs(n.NS.Name, n.holder.PID()) }

// stop ends the node: the kubelet, every process in the node's cgroups
// (the pods), containerd, the shims and the mount namespace, then the
// cgroups themselves.
func (n *Node) stop() error {
	var errs []error
	if n.Kubelet != nil {
		n.Kubelet.Stop()
	}
	if err := killCgroupProcs(n.CgroupRoot()); err != nil {
		errs = append(errs, err)
	}
	if n.Containerd != nil {
		n.Containerd.Stop()
	}
	// Shims outlive containerd; they run in the node's network namespace.
	if n.NS != nil {
		killNamespaceProcs(n.NS.Name, 0)
	}
	if n.holder != nil {
		n.holder.Kill()
	}
	if err := removeCgroups(n.CgroupRoot()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
