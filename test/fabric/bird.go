package fabric

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
)

// BIRD is a BIRD 2 daemon running in a namespace, with its configuration,
// control socket, pid file and log in its own directory.
type BIRD struct {
	NS   *Namespace
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// RequireBIRD checks that bird and birdc (Debian's bird2) are installed:
// the test fails under CI=true without them and is skipped otherwise.
func RequireBIRD(t testing.TB) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (Debian package bird2)")
		}
	}
	RequireAll(t, "a BIRD router", missing)
}

// StartBIRD writes conf (with a log file of dir added) and runs bird in
// ns until the test ends; it returns once bird answers on its control
// socket. Its log is printed when the test failed.
func StartBIRD(t testing.TB, ns *Namespace, dir, conf string) *BIRD {
	t.Helper()
	b := &BIRD{NS: ns, Dir: dir, done: make(chan struct{})}
	full := fmt.Sprintf("log %q all;\n%s", filepath.Join(dir, "bird.log"), conf)
	if err := os.WriteFile(filepath.Join(dir, "bird.conf"), []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "bird.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	b.cmd = ns.Command("bird", "-f", "-c", filepath.Join(dir, "bird.conf"), "-s", b.socket(), "-P", filepath.Join(dir, "bird.pid"))
	b.cmd.Stdout, b.cmd.Stderr = out, out
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("starting bird in %s: %v", ns, err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		Terminate(b.cmd.Process, b.done, 5*time.Second)
		if t.Failed() {
			for _, name := range []string{"bird.log", "bird.out"} {
				if data, err := os.ReadFile(filepath.Join(dir, name)); err == nil && len(data) > 0 {
					t.Logf("BIRD %s %s:\n%s", ns, name, tail(data, 4000))
				}
			}
		}
	})
	err = Eventually(context.Background(), startTimeout, 100*time.Millisecond, func() error {
		select {
		case <-b.done:
			return errors.New("bird exited")
		default:
		}
		_, err := b.Birdc(context.Background(), "show status")
		return err
	})
	if err != nil {
		data, _ := os.ReadFile(filepath.Join(dir, "bird.out"))
		t.Fatalf("bird in %s did not start: %v\n%s", ns, err, data)
	}
	return b
}

func (b *BIRD) socket() string { return filepath.Join(b.Dir, "bird.ctl") }

// Birdc runs one birdc command against this daemon.
func (b *BIRD) Birdc(ctx context.Context, command string) (string, error) {
	out, err := run(ctx, "birdc", append([]string{"-s", b.socket()}, strings.Fields(command)...)...)
	return string(out), err
}

// Established tells whether the BGP protocol name's session is up.
func (b *BIRD) Established(ctx context.Context, name string) (bool, error) {
	out, err := b.Birdc(ctx, "show protocols "+name)
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return strings.Contains(line, "Established"), nil
		}
	}
	return false, fmt.Errorf("birdc show protocols %s: no such protocol:\n%s", name, out)
}
