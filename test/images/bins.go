package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
)

// ContainerdBinDir is the directory holding containerd, ctr and
// containerd-shim-runc-v2: $BMCCM_CONTAINERD_BIN if set, else what
// hack/build-containerd.sh prints (it builds them on its first run).
func ContainerdBinDir(ctx context.Context) (string, error) {
	return hackBinDir(ctx, "BMCCM_CONTAINERD_BIN", "build-containerd.sh")
}

// EtcdBinDir is the directory holding the etcd of the etcd image:
// $BMCCM_ETCD_BIN if set, else what hack/build-etcd.sh prints.
func EtcdBinDir(ctx context.Context) (string, error) {
	return hackBinDir(ctx, "BMCCM_ETCD_BIN", "build-etcd.sh")
}

// E2EBinDir is the directory holding e2e.test, ginkgo and agnhost:
// $BMCCM_E2E_BIN if set, else what hack/build-e2e.sh prints (it builds
// them on its first run: long, e2e.test is large).
func E2EBinDir(ctx context.Context) (string, error) {
	return hackBinDir(ctx, "BMCCM_E2E_BIN", "build-e2e.sh")
}

func hackBinDir(ctx context.Context, env, script string) (string, error) {
	if d := os.Getenv(env); d != "" {
		return d, nil
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "hack", script))
	cmd.Stderr = io.Discard
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("images: hack/%s failed (run it by hand to see why, or set %s): %w", script, env, err)
	}
	return strings.TrimSpace(string(out)), nil
}
