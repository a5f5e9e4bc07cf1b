package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
)

// TestVersionStamped builds the binary with the Makefile's build target
// and a given VERSION, and checks that --version prints it, without a
// cloud config, and that component-base (--version=raw, which /version and
// the build info metric use) reports the same.
func TestVersionStamped(t *testing.T) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	const stamp = "v9.8.7-test.1"
	bin := filepath.Join(t.TempDir(), "ccm")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "make", "--no-print-directory", "build", "VERSION="+stamp, "BIN="+bin)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string // the whole output, or a regexp for raw
	}{
		{[]string{"--version"}, "baremetal-cloud-controller-manager " + stamp + "\n"},
		{[]string{"--version=true"}, "baremetal-cloud-controller-manager " + stamp + "\n"},
		{[]string{"--version=raw"}, `GitVersion:"` + regexp.QuoteMeta(stamp) + `"`},
	} {
		out, err := exec.CommandContext(ctx, bin, tc.args...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", tc.args, err, out)
			continue
		}
		if tc.args[0] == "--version=raw" {
			if !regexp.MustCompile(tc.want).Match(out) {
				t.Errorf("%s printed %q, want it to match %s", tc.args, out, tc.want)
			}
		} else if string(out) != tc.want {
			t.Errorf("%s printed %q, want %q", tc.args, out, tc.want)
		}
	}
}

// TestVersionUnstamped checks a plain `go build` binary: --version works
// without a cloud config and says what component-base says.
func TestVersionUnstamped(t *testing.T) {
	code, out, err := ccm.Run(context.Background(), "--version")
	if err != nil || code != 0 {
		t.Fatalf("--version: exit %d, %v\n%s", code, err, out)
	}
	version, ok := strings.CutPrefix(strings.TrimSpace(out), "baremetal-cloud-controller-manager ")
	if !ok || !strings.HasPrefix(version, "v") || strings.Contains(out, "Kubernetes") {
		t.Fatalf("--version printed %q, want \"baremetal-cloud-controller-manager vX.Y.Z...\"", out)
	}
	code, raw, err := ccm.Run(context.Background(), "--version=raw")
	if err != nil || code != 0 {
		t.Fatalf("--version=raw: exit %d, %v\n%s", code, err, raw)
	}
	if !strings.Contains(raw, `GitVersion:"`+version+`"`) {
		t.Errorf("--version says %s but --version=raw says %s", version, raw)
	}
}
