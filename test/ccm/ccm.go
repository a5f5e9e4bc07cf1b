// Package ccm builds and runs the real baremetal-cloud-controller-manager
// binary for integration and end-to-end tests.
package ccm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// binDirPrefix starts the name of the directory each test process builds
// the binary into; its pid ends it.
const binDirPrefix = "bmccm-ccm-pid-"

// Build compiles the binary once per test process, into a directory of the
// temporary directory named after the process, with the flags the Makefile
// and the Dockerfile use. A test process cannot remove the directory when
// it ends, so Build first removes those of test processes that have ended:
// the machine keeps at most one per running (or last) test process.
func Build() (string, error) {
	buildOnce.Do(func() {
		root, err := controlplane.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		removeEndedBuilds()
		dir := filepath.Join(os.TempDir(), binDirPrefix+strconv.Itoa(os.Getpid()))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "baremetal-cloud-controller-manager")
		cmd := exec.Command("go", "build", "-trimpath", "-o", binary, "./cmd/baremetal-cloud-controller-manager")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	return binary, buildErr
}

// removeEndedBuilds removes the build directories of test processes that
// no longer run (their pid does not exist).
func removeEndedBuilds() {
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), binDirPrefix))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), binDirPrefix) || err != nil || pid <= 0 {
			continue
		}
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
		}
	}
}

// Options configure one CCM process.
type Options struct {
	Kubeconfig  string
	CloudConfig string
	// Args are added after the defaults and override them.
	Args []string
	// Wrap runs the binary through a command, e.g. ip netns exec NAME.
	Wrap []string
	// Env is added to the test process's environment ("NAME=value").
	Env []string
}

// Process is a running CCM.
type Process struct {
	cmd    *exec.Cmd
	done   chan struct{}
	logMu  sync.Mutex
	log    bytes.Buffer
	exited error
}

// TestArgs are flags that make the controllers react fast enough for tests.
var TestArgs = []string{
	"--cloud-provider=baremetal",
	"--leader-elect=false",
	"--secure-port=0",
	"--node-monitor-period=1s",
	"--cloud-config-reload-interval=1s",
	"--v=2",
}

// Start runs the binary until the test ends (or Kill/Stop).
func Start(t testing.TB, opts Options) *Process {
	t.Helper()
	bin, err := Build()
	if err != nil {
		t.Fatalf("building the CCM: %v", err)
	}
	args := append([]string{}, TestArgs...)
	args = append(args, "--kubeconfig="+opts.Kubeconfig, "--cloud-config="+opts.CloudConfig)
	args = append(args, opts.Args...)
	argv := append(append([]string{}, opts.Wrap...), bin)
	argv = append(argv, args...)
	p := &Process{done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	if len(opts.Env) > 0 {
		p.cmd.Env = append(os.Environ(), opts.Env...)
	}
	p.cmd.Stdout = &lockedWriter{p}
	p.cmd.Stderr = &lockedWriter{p}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting the CCM: %v", err)
	}
	go func() {
		p.exited = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("CCM log (last 60 lines):\n%s", p.LogTail(60))
		}
	})
	return p
}

type lockedWriter struct{ p *Process }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.logMu.Lock()
	defer w.p.logMu.Unlock()
	return w.p.log.Write(b)
}

// Log returns everything the process printed so far.
func (p *Process) Log() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// LogTail returns the last n lines of the log.
func (p *Process) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// PID is the process's ID: for reading its /proc entries.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to end.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM, and SIGKILL if it has not ended in 10 s.
func (p *Process) Stop() {
	fabric.Terminate(p.cmd.Process, p.done, 10*time.Second)
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Run runs the binary to completion with the given arguments and returns its
// exit code and output: for checking how it refuses bad input.
func Run(ctx context.Context, args ...string) (int, string, error) {
	bin, err := Build()
	if err != nil {
		return 0, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out), nil
	}
	return 0, string(out), err
}

// WriteConfig writes a cloud config file the way a ConfigMap update does
// (write, then rename), so that the CCM never reads half a file.
func WriteConfig(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
