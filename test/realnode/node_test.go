package realnode

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
	"github.com/baremetal-ccm/baremetal-ccm/test/lab"
)

// TestNodeIsolation builds the network and every node's namespaces and
// containerd, without Kubernetes, and checks what a node sees is its own
// (/run, /var/lib, /etc writes, kernel tunables) while the host's stays
// as it was, also after teardown.
func TestNodeIsolation(t *testing.T) {
	requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	prefix := fabric.UniqueName("rt")[:6]
	if err := ReapStale(t.Logf); err != nil {
		t.Fatal(err)
	}
	before, err := CaptureHostState(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, prefix)
	if err := lab.ClaimDir(o.Dir); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Opts: o}
	var ids []string
	t.Cleanup(func() {
		if err := c.Down(); err != nil {
			t.Errorf("down: %v", err)
		}
		if left := ProcessesIn(ids); len(left) > 0 {
			t.Errorf("processes left in the node's namespaces: %v", left)
		}
		after, err := CaptureHostState(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		if d := before.Diff(after); len(d) > 0 {
			t.Errorf("the machine changed:\n%s", strings.Join(d, "\n"))
		}
	})
	if err := c.buildNetwork(ctx); err != nil {
		t.Fatal(err)
	}
	n := c.Nodes[0]
	if err := n.prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.StartContainerd(ctx); err != nil {
		t.Fatal(err)
	}
	ids = c.NamespaceIDs()
	// The kubelet's tunables read as it wants them inside, unchanged outside.
	for k, want := range kernelTunables {
		out, err := n.Exec(ctx, "cat", "/proc/sys/"+k)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("inside %s: %s = %s, want %s", n.Name, k, got, want)
		}
	}
	if _, err := n.Exec(ctx, "/bin/sh", "-c", "echo 1 > /proc/sys/kernel/panic_on_oops"); err != nil {
		t.Fatal(err)
	}
	// /etc writes land in the node's directory, not the host's /etc.
	if err := n.WriteFile(ctx, "/etc/kubernetes/lab/probe", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/etc/kubernetes/lab/probe"); err == nil {
		t.Errorf("a node's /etc write reached the host's /etc")
	}
	if _, err := os.Stat(filepath.Join(n.Dir, "etc", "kubernetes", "lab", "probe")); err != nil {
		t.Errorf("a node's /etc write is not in its directory: %v", err)
	}
	// containerd's socket and state are the node's.
	if _, err := os.Stat("/run/containerd/containerd.sock"); err == nil && !hostHadContainerd {
		t.Errorf("the node's containerd socket is visible on the host")
	}
	if _, err := os.Stat(filepath.Join(n.Dir, "varlib", "containerd")); err != nil {
		t.Errorf("containerd's root is not the node's /var/lib: %v", err)
	}
}

var hostHadContainerd = func() bool {
	_, err := os.Stat("/run/containerd/containerd.sock")
	return err == nil
}()
