package controlplane

import (
	"context"
	"os"
	"testing"
)

// StartT starts a control plane for one test and stops it on cleanup, also
// when the test fails. Without the binaries it fails under CI=true and skips
// otherwise.
func StartT(t testing.TB) *ControlPlane {
	t.Helper()
	return StartTWith(t, Options{Dir: t.TempDir()})
}

// StartTWith is StartT with opts, for a test that needs its data elsewhere
// (a benchmark keeps etcd's on tmpfs).
func StartTWith(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	RequireTools(t, "etcd")
	cp, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(cp.LogTail(20))
		}
		cp.Stop()
	})
	return cp
}

// RequireTools fails the test under CI (CI=true) when a tool is missing,
// and skips it with the reason elsewhere.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := lookPath(tool); err != nil {
			Unavailable(t, tool+" is not installed (see .ci/run for the packages)")
		}
	}
}

// RequireRoot fails under CI and skips elsewhere when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root (network namespaces)")
	}
}

// Unavailable reports a missing prerequisite: a failure on CI, where every
// test must run, and a skip with the reason on a developer's machine.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %s", reason)
	}
	t.Skip(reason)
}
