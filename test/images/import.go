package images

import (
	"context"
	"fmt"
	"os/exec"
)

// Namespace is the containerd namespace the kubelet's CRI uses.
const Namespace = "k8s.io"

// Import imports each archive into the containerd listening on address,
// in the kubelet's namespace, with the ctr binary at ctr: the image is
// named by its reference and unpacked for the default snapshotter.
func Import(ctx context.Context, ctr, address string, archives []Archive) error {
	for _, a := range archives {
		cmd := exec.CommandContext(ctx, ctr, "--address", address, "--namespace", Namespace, "images", "import", a.Path)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("images: ctr images import %s (%s): %w\n%s", a.Path, a.Ref, err, out)
		}
	}
	return nil
}
