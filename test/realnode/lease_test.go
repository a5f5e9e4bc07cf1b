package realnode

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/baremetal-ccm/baremetal-ccm/test/lab"
)

// TestLease checks that a lab whose process died is removed by the next
// one, and that a live one is refused, not touched. The holder is another
// process (flock(1)), killed the way a stopped session kills a test.
func TestLease(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Fatalf("flock(1) (util-linux) is needed: %v", err)
	}
	old := leaseDir
	leaseDir = filepath.Join(t.TempDir(), "leases")
	t.Cleanup(func() { leaseDir = old })
	logf := func(f string, a ...any) { t.Logf(f, a...) }

	// holdLease writes a lease for prefix whose lab directory holds a
	// file, and has a separate process hold its lock until killed.
	holdLease := func(t *testing.T, prefix string) (dir string, holder *exec.Cmd) {
		t.Helper()
		dir = filepath.Join(t.TempDir(), "lab")
		if err := lab.ClaimDir(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "kubelet.log"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(leaseDir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(leaseDir, prefix)
		rec, _ := json.Marshal(leaseRecord{Prefix: prefix, Dir: dir, PID: 1})
		if err := os.WriteFile(path, rec, 0o644); err != nil {
			t.Fatal(err)
		}
		// flock(1) prints nothing once it holds the lock, so it runs the
		// shell that says so; --no-fork makes it one process (no child
		// keeps the lock after a kill).
		holder = exec.Command("flock", "--exclusive", "--no-fork", path, "sh", "-c", "echo locked; exec sleep 600")
		out, err := holder.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
		buf := make([]byte, len("locked\n"))
		if _, err := out.Read(buf); err != nil || string(buf) != "locked\n" {
			t.Fatalf("the lock holder did not start: %q %v", buf, err)
		}
		return dir, holder
	}

	t.Run("live lab is refused and kept", func(t *testing.T) {
		dir, _ := holdLease(t, "rlive1")
		_, err := takeLease("rnew01", t.TempDir(), logf)
		if !errors.Is(err, ErrLabRunning) || !strings.Contains(err.Error(), `"rlive1"`) {
			t.Fatalf("takeLease with a live lab = %v, want ErrLabRunning naming rlive1", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "kubelet.log")); err != nil {
			t.Errorf("the live lab's directory was touched: %v", err)
		}
		if _, err := os.Stat(filepath.Join(leaseDir, "rnew01")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused lab left a lease: %v", err)
		}
	})

	t.Run("dead lab is removed, then the lease is ours", func(t *testing.T) {
		dir, holder := holdLease(t, "rdead1")
		// The lab's process is SIGKILLed: no teardown runs.
		_ = holder.Process.Signal(syscall.SIGKILL)
		_ = holder.Wait()
		l, err := takeLease("rnew02", t.TempDir(), logf)
		if err != nil {
			t.Fatalf("takeLease after the holder died: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the dead lab's directory is still there: %v", err)
		}
		if _, err := os.Stat(filepath.Join(leaseDir, "rdead1")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the dead lab's lease is still there: %v", err)
		}
		// Held by us: another taker is refused until we let go.
		if _, err := takeLease("rnew03", t.TempDir(), logf); !errors.Is(err, ErrLabRunning) {
			t.Errorf("takeLease while rnew02 is held = %v, want ErrLabRunning", err)
		}
		l.release()
		l.release() // twice is safe
		if err := removeLease("rnew02"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(leaseDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the last lease's removal left %s: %v", leaseDir, err)
		}
	})

	t.Run("unfinished lease file is removed", func(t *testing.T) {
		if err := os.MkdirAll(leaseDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(leaseDir, "rhalf1"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := takeLease("rnew04", t.TempDir(), logf)
		if err != nil {
			t.Fatal(err)
		}
		defer l.release()
		if _, err := os.Stat(filepath.Join(leaseDir, "rhalf1")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the empty lease is still there: %v", err)
		}
	})

	t.Run("prefix that is no file name", func(t *testing.T) {
		for _, p := range []string{"", "../x", "a/b"} {
			if _, err := takeLease(p, t.TempDir(), logf); err == nil {
				t.Errorf("takeLease(%q) succeeded", p)
			}
		}
	})
}
