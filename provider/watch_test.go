package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// watchFixture is a cloud config naming a password file, in a temporary
// directory, and a watcher whose apply records what it is given.
type watchFixture struct {
	t        *testing.T
	dir      string
	cfgPath  string
	pwPath   string
	w        *configWatcher
	applied  []*config.Config
	applyErr error
	logs     ktesting.Underlier
	ctx      context.Context
	now      time.Time
}

func newWatchFixture(t *testing.T) *watchFixture {
	dir := t.TempDir()
	f := &watchFixture{t: t, dir: dir, cfgPath: filepath.Join(dir, "cloud.yaml"), pwPath: filepath.Join(dir, "tor-a.password"), now: time.Unix(1e9, 0)}
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	f.logs = logger.GetSink().(ktesting.Underlier)
	f.ctx = klog.NewContext(context.Background(), logger)
	f.w = &configWatcher{path: f.cfgPath, interval: time.Second, apply: func(_ context.Context, cfg *config.Config) error {
		if f.applyErr != nil {
			return f.applyErr
		}
		f.applied = append(f.applied, cfg)
		return nil
	}}
	return f
}

// config is a valid file naming the password file; extra is added to it.
func (f *watchFixture) config(extra string) string {
	return fmt.Sprintf("region: lab\nbgp:\n  asn: 64512\n  peers:\n  - name: tor-a\n    address: 198.51.100.1\n    asn: 64513\n    passwordFile: %s\n%s", f.pwPath, extra)
}

func (f *watchFixture) write(path, content string) {
	f.t.Helper()
	// As a ConfigMap or Secret update does: a new file renamed over the
	// old one, so that no reader sees half of it.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		f.t.Fatal(err)
	}
}

// poll runs one check, a poll interval after the previous one.
func (f *watchFixture) poll() {
	f.now = f.now.Add(f.w.interval)
	f.w.check(f.ctx, f.now)
}

// logged counts the log entries whose message contains msg.
func (f *watchFixture) logged(msg string) int {
	n := 0
	for _, e := range f.logs.GetBuffer().Data() {
		if strings.Contains(e.Message, msg) {
			n++
		}
	}
	return n
}

// TestWatchPasswordFile checks the reload of a config and the password
// file it names, in a real directory: a config naming a password file that
// does not exist yet is rejected, logged once, and applied as soon as the
// file appears, without the config changing; a rotated password is applied
// without a restart; unchanged content is not applied again.
func TestWatchPasswordFile(t *testing.T) {
	f := newWatchFixture(t)
	f.write(f.cfgPath, "region: lab\n")
	f.w.run(canceled()) // takes what is there as in force
	f.poll()
	if len(f.applied) != 0 {
		t.Fatalf("applied %d configs for the file in force, want 0", len(f.applied))
	}

	f.write(f.cfgPath, f.config(""))
	for range 3 {
		f.poll()
	}
	if len(f.applied) != 0 {
		t.Fatalf("applied a config whose password file does not exist")
	}
	if n := f.logged("Rejected the cloud config"); n != 1 {
		t.Errorf("the rejection was logged %d times over 3 polls, want once", n)
	}

	f.write(f.pwPath, "secret-1\n")
	f.poll()
	if len(f.applied) != 1 {
		t.Fatalf("the password file appeared: applied %d configs, want 1", len(f.applied))
	}
	if got := f.applied[0].PasswordFiles(); len(got) != 1 || got[0] != f.pwPath {
		t.Errorf("applied config's password files = %q, want [%s]", got, f.pwPath)
	}

	f.poll()
	f.poll()
	if len(f.applied) != 1 {
		t.Fatalf("nothing changed: applied %d configs, want still 1", len(f.applied))
	}

	f.write(f.pwPath, "secret-2\n")
	f.poll()
	if len(f.applied) != 2 {
		t.Fatalf("the password changed: applied %d configs, want 2", len(f.applied))
	}
	f.poll()
	if len(f.applied) != 2 {
		t.Fatalf("nothing changed since the new password: applied %d configs, want still 2", len(f.applied))
	}

	// A password the speaker would refuse: the config is rejected
	// (logged once), the running one stays; fixed, it is applied.
	f.write(f.pwPath, "")
	f.poll()
	f.poll()
	if len(f.applied) != 2 {
		t.Fatalf("applied a config whose password file is empty")
	}
	if n := f.logged("Rejected the cloud config"); n != 2 {
		t.Errorf("rejections logged %d times, want 2 (one per distinct problem)", n)
	}
	f.write(f.pwPath, "secret-3\n")
	f.poll()
	if len(f.applied) != 3 {
		t.Fatalf("the password was fixed: applied %d configs, want 3", len(f.applied))
	}
}

// TestWatchRetriesRejectedContent checks that the same rejected content is
// rejected again when it comes back, after a valid version was applied,
// and that warnings are logged once per content applied.
func TestWatchRetriesRejectedContent(t *testing.T) {
	f := newWatchFixture(t)
	f.write(f.pwPath, "secret\n")
	f.write(f.cfgPath, f.config(""))
	f.w.run(canceled())

	bad := f.config("bogus: true\n")
	f.write(f.cfgPath, bad)
	f.poll()
	f.poll()
	if n := f.logged("Rejected the cloud config"); n != 1 {
		t.Fatalf("rejection logged %d times, want 1", n)
	}
	withRouterID := strings.Replace(f.config(""), "  asn: 64512\n", "  asn: 64512\n  routerID: 192.0.2.1\n", 1)
	f.write(f.cfgPath, withRouterID)
	f.poll()
	f.poll()
	if len(f.applied) != 1 {
		t.Fatalf("applied %d configs, want 1", len(f.applied))
	}
	if n := f.logged("Warning: bgp.routerID"); n != 1 {
		t.Errorf("the router ID warning was logged %d times, want once", n)
	}
	f.write(f.cfgPath, bad)
	f.poll()
	if n := f.logged("Rejected the cloud config"); n != 2 {
		t.Errorf("the bad file came back: rejection logged %d times in all, want 2", n)
	}
}

// TestWatchApplyFailure checks that a config the provider fails to apply
// is retried with a growing interval, the failure logged once, and that a
// later success stops the retries.
func TestWatchApplyFailure(t *testing.T) {
	f := newWatchFixture(t)
	f.write(f.pwPath, "secret\n")
	f.write(f.cfgPath, "region: lab\n")
	f.w.run(canceled())
	f.write(f.cfgPath, f.config(""))

	attempts := 0
	f.w.apply = func(context.Context, *config.Config) error {
		attempts++
		return errors.New("the listen port is taken")
	}
	// Attempts at polls 1, 2, 4, 8: the wait doubles from one interval.
	for range 8 {
		f.poll()
	}
	if attempts != 4 {
		t.Errorf("8 polls with a failing apply: %d attempts, want 4 (backoff 1, 2, 4 intervals)", attempts)
	}
	if n := f.logged("Could not apply the changed cloud config"); n != 1 {
		t.Errorf("the failure was logged %d times, want once", n)
	}

	// The next attempt is due 8 intervals after the last; it succeeds,
	// and nothing is applied again.
	f.w.apply = func(context.Context, *config.Config) error { attempts++; return nil }
	for range 12 {
		f.poll()
	}
	if attempts != 5 {
		t.Errorf("after the apply succeeds: %d attempts in all, want 5", attempts)
	}
}

// TestWatchRun checks the polling loop itself: a change is applied without
// a call to check, and the loop ends with its context.
func TestWatchRun(t *testing.T) {
	f := newWatchFixture(t)
	f.write(f.cfgPath, "region: lab\n")
	got := make(chan *config.Config, 1)
	f.w.interval = 10 * time.Millisecond
	f.w.apply = func(_ context.Context, cfg *config.Config) error {
		select {
		case got <- cfg:
		default:
		}
		return nil
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.w.run(ctx)
	}()
	// run reads the file in force before it polls; a change from then on
	// is applied. Write until it is seen, since run may start late.
	deadline := time.After(time.Minute)
	for i := 0; ; i++ {
		f.write(f.cfgPath, fmt.Sprintf("region: lab-%d\n", i))
		select {
		case cfg := <-got:
			if !strings.HasPrefix(cfg.Region, "lab-") {
				t.Errorf("applied region %q, want a lab-N", cfg.Region)
			}
			cancel()
			<-done
			return
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("no change applied within a minute")
		}
	}
}

// canceled returns a context that is already done: run then only takes
// the file in force and returns.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
