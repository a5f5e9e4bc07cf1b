package realnode

import (
	"os"
	"os/exec"
	"testing"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// requireTools fails the test under CI=true, and skips it otherwise, when
// the machine lacks what a real node needs.
func requireTools(t *testing.T) {
	t.Helper()
	fabric.Require(t, true)
	var missing []string
	for _, tool := range []string{"nsenter", "unshare", "runc", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	for _, f := range []string{"/usr/lib/cni/bridge", "/usr/lib/cni/host-local"} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	for _, env := range []string{"BMCCM_K8S_BIN", "BMCCM_CONTAINERD_BIN"} {
		if os.Getenv(env) == "" {
			missing = append(missing, "$"+env)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "the real-node lab needs " + join(missing)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: these tests must run in CI; make test sets the variables)")
	}
	t.Skip(msg)
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}

// testOptions are the options of a lab for test t, in a directory of its own.
func testOptions(t *testing.T, prefix string) Options {
	return Options{
		Prefix:           prefix,
		Dir:              t.TempDir(),
		K8sBinDir:        os.Getenv("BMCCM_K8S_BIN"),
		ContainerdBinDir: os.Getenv("BMCCM_CONTAINERD_BIN"),
		CNIBinDir:        "/usr/lib/cni",
		Runc:             "/usr/sbin/runc",
		Logf:             t.Logf,
	}
}
