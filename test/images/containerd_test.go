package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testContainerd is a containerd of the test's own: its root, state,
// temporary directory, socket and log under dir, and its own mount
// namespace with a tmpfs on /run, where containerd keeps what it does not
// put under state (/run/containerd/...), so that nothing of it stays on the
// host.
type testContainerd struct {
	ctr, address, log string
	cmd               *exec.Cmd
	exited            chan error // receives cmd.Wait's result, once
	stopOnce          sync.Once
}

// containerdConfig disables what would reach outside the test's
// directories or is not needed to import images: the CRI plugins (CNI
// configuration directories, the kubelet's API), NRI (a socket under
// /var/run/nri) and the opt plugin (/opt/containerd).
const containerdConfig = `version = 3
root = %[1]q
state = %[2]q
temp = %[3]q
imports = []
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.runtime",
  "io.containerd.cri.v1.images",
  "io.containerd.podsandbox.controller.v1.podsandbox",
  "io.containerd.nri.v1.nri",
  "io.containerd.internal.v1.opt",
]

[grpc]
  address = %[4]q

[ttrpc]
  address = %[5]q
`

func startContainerd(t *testing.T, binDir string) *testContainerd {
	t.Helper()
	dir := t.TempDir()
	paths := map[string]string{}
	for _, d := range []string{"root", "state", "tmp"} {
		paths[d] = filepath.Join(dir, d)
		if err := os.Mkdir(paths[d], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	c := &testContainerd{
		ctr:     filepath.Join(binDir, "ctr"),
		address: filepath.Join(dir, "containerd.sock"),
		log:     filepath.Join(dir, "containerd.log"),
		exited:  make(chan error, 1),
	}
	config := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf(containerdConfig, paths["root"], paths["state"], paths["tmp"], c.address, c.address+".ttrpc")
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	// unshare and sh exec in turn: the process started is containerd.
	c.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", `mount -t tmpfs -o mode=0755 bmccm-images /run && exec "$0" --config "$1"`,
		filepath.Join(binDir, "containerd"), config)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting containerd: %v", err)
	}
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(func() { c.stop(t) })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		out, err := c.run(ctx, "version")
		if err == nil {
			return c
		}
		select {
		case err := <-c.exited:
			c.exited <- err
			t.Fatalf("containerd exited at start: %v\n%s", err, c.logTail())
		case <-ctx.Done():
			t.Fatalf("containerd did not answer within 2 minutes: %v %s\n%s", err, out, c.logTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// run runs ctr against this containerd in the kubelet's namespace.
func (c *testContainerd) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.ctr, append([]string{"--address", c.address, "--namespace", Namespace}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// stop ends containerd by its PID: SIGTERM, then SIGKILL after 30 s. Only
// the first call does anything.
func (c *testContainerd) stop(t *testing.T) {
	c.stopOnce.Do(func() { c.stopNow(t) })
}

func (c *testContainerd) stopNow(t *testing.T) {
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("stopping containerd: %v", err)
	}
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
		t.Errorf("containerd did not stop within 30 s of SIGTERM")
	}
	if t.Failed() {
		t.Log(c.logTail())
	}
}

func (c *testContainerd) logTail() string {
	data, _ := os.ReadFile(c.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "containerd log:\n" + strings.Join(lines, "\n")
}
