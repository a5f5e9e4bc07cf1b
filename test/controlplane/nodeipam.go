package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// ErrNoControllerManager is returned by StartNodeIPAM when BinDir holds no
// kube-controller-manager (hack/build-k8s.sh builds it only on request).
var ErrNoControllerManager = errors.New("controlplane: no kube-controller-manager binary")

// NodeIPAM is a kube-controller-manager running only its node IPAM
// controller: it gives each Node spec.podCIDRs from the cluster CIDRs, as
// kubeadm's control plane does with networking.podSubnet.
type NodeIPAM struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// NodeIPAMOptions configure StartNodeIPAM.
type NodeIPAMOptions struct {
	// ClusterCIDRs is --cluster-cidr: one network, or an IPv4 and an IPv6
	// one.
	ClusterCIDRs []string
	// MaskSize4 and MaskSize6 are the pod CIDRs' lengths (0: the
	// controller's defaults, /24 and /64).
	MaskSize4, MaskSize6 int
	// Dir receives the log; required.
	Dir string
}

// StartNodeIPAM runs kube-controller-manager from BinDir with the node
// IPAM controller alone, against the control plane, until Stop. It
// returns ErrNoControllerManager when the binary is missing.
func (cp *ControlPlane) StartNodeIPAM(ctx context.Context, o NodeIPAMOptions) (*NodeIPAM, error) {
	dir, err := BinDir(ctx)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w in %s", ErrNoControllerManager, dir)
	}
	args := []string{
		"--kubeconfig=" + cp.Kubeconfig,
		"--controllers=nodeipam",
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + strings.Join(o.ClusterCIDRs, ","),
		"--leader-elect=false",
		"--secure-port=0",
		"--v=2",
	}
	if o.MaskSize4 > 0 {
		args = append(args, fmt.Sprintf("--node-cidr-mask-size-ipv4=%d", o.MaskSize4))
	}
	if o.MaskSize6 > 0 {
		args = append(args, fmt.Sprintf("--node-cidr-mask-size-ipv6=%d", o.MaskSize6))
	}
	n := &NodeIPAM{done: make(chan struct{}), log: filepath.Join(o.Dir, "kube-controller-manager.log")}
	logFile, err := os.Create(n.log)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("controlplane: starting %s: %w", bin, err)
	}
	go func() {
		_ = n.cmd.Wait()
		logFile.Close()
		close(n.done)
	}()
	return n, nil
}

// StartNodeIPAMT is StartNodeIPAM for a test: it stops with the test, and
// its log is printed when the test failed. Without the binary it returns
// nil, ErrNoControllerManager; other errors fail the test.
func (cp *ControlPlane) StartNodeIPAMT(t testing.TB, o NodeIPAMOptions) (*NodeIPAM, error) {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	n, err := cp.StartNodeIPAM(context.Background(), o)
	if errors.Is(err, ErrNoControllerManager) {
		return nil, err
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("kube-controller-manager log (last 30 lines):\n%s", n.LogTail(30))
		}
	})
	return n, nil
}

// Stop ends the process: SIGTERM, SIGKILL after 10 s.
func (n *NodeIPAM) Stop() { fabric.Terminate(n.cmd.Process, n.done, 10*time.Second) }

// LogTail returns the last lines of the log.
func (n *NodeIPAM) LogTail(lines int) string {
	data, _ := os.ReadFile(n.log)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
