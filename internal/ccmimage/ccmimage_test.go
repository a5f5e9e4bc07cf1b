package ccmimage

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/baremetal-ccm/baremetal-ccm/internal/ociimage"
)

func TestSpec(t *testing.T) {
	// Not ELF, so not dynamically linked: enough to check the layout.
	binary := filepath.Join(t.TempDir(), "ccm")
	if err := os.WriteFile(binary, []byte("static"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Spec(binary, "v1.2.3")
	if err != nil {
		t.Fatalf("Spec: %v", err)
	}
	if s.Config.User != "65532:65532" || !slices.Equal(s.Config.Entrypoint, []string{Binary}) {
		t.Errorf("config user %q entrypoint %q, want 65532:65532 and [%s]", s.Config.User, s.Config.Entrypoint, Binary)
	}
	if got := s.Config.Labels["org.opencontainers.image.version"]; got != "v1.2.3" {
		t.Errorf("version label %q, want v1.2.3", got)
	}
	paths := map[string]ociimage.File{}
	for _, f := range s.Files {
		paths[f.Path] = f
	}
	for _, p := range []string{Binary, "/etc/passwd", "/etc/group", ociimage.CACertificates} {
		if _, ok := paths[p]; !ok {
			t.Errorf("the image has no %s", p)
		}
	}
	if f := paths[Binary]; f.Source != binary || f.Mode != 0o755 {
		t.Errorf("%s from %q mode %v, want from %q, 0755", Binary, f.Source, f.Mode, binary)
	}
	if !strings.Contains(string(paths["/etc/passwd"].Data), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot 65532:\n%s", paths["/etc/passwd"].Data)
	}

	// A dynamically linked binary would not run on a base without libc.
	if _, err := Spec("/usr/bin/env", "v1"); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("Spec of a dynamically linked binary = %v, want an error naming CGO_ENABLED=0", err)
	}
}
