package images

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/baremetal-ccm/baremetal-ccm/internal/ociimage"
)

// TestCoreDNSSpec checks the CoreDNS image around a stand-in for the
// program (the real one comes from hack/build-coredns.sh): the name
// kubeadm's addon asks for, and /coredns as the entrypoint its Deployment
// passes only arguments to.
func TestCoreDNSSpec(t *testing.T) {
	if got, want := (Options{}).CoreDNSImage(), "registry.lab.example/k8s/coredns:v1.14.6"; got != want {
		t.Errorf("CoreDNSImage() = %q, want %q", got, want)
	}
	binary := filepath.Join(t.TempDir(), "coredns")
	if err := os.WriteFile(binary, []byte("#!/coredns stand-in\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := coreDNSSpec(binary)
	if err != nil {
		t.Fatalf("coreDNSSpec: %v", err)
	}
	if diff := cmp.Diff(ociimage.Config{Entrypoint: []string{"/coredns"}, Env: []string{ociimage.StaticPath}}, s.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	found := false
	for _, f := range s.Files {
		if f.Path == "/coredns" {
			found = f.Source == binary && f.Mode == 0o755
		}
	}
	if !found {
		t.Errorf("the image has no /coredns from %s with mode 0755", binary)
	}
	if _, err := ociimage.Build(s); err != nil {
		t.Errorf("Build: %v", err)
	}
}
