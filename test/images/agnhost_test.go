package images

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/baremetal-ccm/baremetal-ccm/internal/ociimage"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
)

// TestAgnhostSpec checks the agnhost image's content around a stand-in
// for the program (the real one comes from hack/build-e2e.sh, too long a
// build for a unit test): what the e2e tests run in it is there, and the
// whole makes one image.
func TestAgnhostSpec(t *testing.T) {
	for _, tool := range agnhostTools {
		if _, err := lookHostTool(tool.host); errors.Is(err, exec.ErrNotFound) {
			controlplane.Unavailable(t, err.Error())
		}
	}
	// Coreutils are Debian's essential packages: always there.
	// Not ELF, so not dynamically linked: what binaryImage asks of it.
	binary := filepath.Join(t.TempDir(), "agnhost")
	if err := os.WriteFile(binary, []byte("#!/agnhost stand-in\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := agnhostSpec(context.Background(), binary)
	if err != nil {
		t.Fatalf("agnhostSpec: %v", err)
	}

	if diff := cmp.Diff(ociimage.Config{
		Entrypoint: []string{"/agnhost"},
		Cmd:        []string{"pause"},
		Env:        []string{ociimage.StaticPath},
	}, s.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}

	files := map[string]ociimage.File{}
	for _, f := range s.Files {
		files[f.Path] = f
	}
	if f, ok := files["/agnhost"]; !ok || f.Source != binary || f.Mode != 0o755 {
		t.Errorf("/agnhost = %+v (present %v), want %s with mode 0755", f, ok, binary)
	}
	for _, name := range []string{"sh", "curl", "wget", "nc", "grep", "sed", "ip", "ss", "cat", "head", "sleep", "echo"} {
		if _, ok := files["/usr/bin/"+name]; !ok {
			t.Errorf("the image has no /usr/bin/%s", name)
		}
	}
	if f := files["/usr/bin/nc"]; filepath.Base(f.Source) != "nc.openbsd" {
		t.Errorf("/usr/bin/nc is %s, want OpenBSD netcat (the flags the tests pass are its)", f.Source)
	}
	for _, want := range []ociimage.Symlink{
		{Path: "/bin", Target: "usr/bin"},
		{Path: "/agnhost-2", Target: "agnhost"},
	} {
		if !slices.Contains(s.Symlinks, want) {
			t.Errorf("the image has no symbolic link %s -> %s", want.Path, want.Target)
		}
	}
	if !slices.ContainsFunc(s.Dirs, func(d ociimage.Dir) bool { return d.Path == "/uploads" }) {
		t.Error("the image has no /uploads (netexec's upload directory)")
	}

	// The libraries of the tools, the loader and the links on the way to
	// them must agree with each other and with the base: Build says.
	if _, err := ociimage.Build(s); err != nil {
		t.Errorf("Build: %v", err)
	}
}
