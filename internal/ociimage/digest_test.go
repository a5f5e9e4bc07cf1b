package ociimage

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInputDigest(t *testing.T) {
	host := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(host, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := func() Spec {
		return Spec{
			Files:  []File{{Path: "/bin", Source: host}, {Path: "/etc/passwd", Data: []byte("root:x:0:0::/:/sbin/nologin\n")}},
			Config: Config{Entrypoint: []string{"/bin"}, Labels: map[string]string{"a": "1", "b": "2"}},
		}
	}
	digest := func(s Spec) string {
		t.Helper()
		d, err := s.InputDigest()
		if err != nil {
			t.Fatalf("InputDigest: %v", err)
		}
		return d
	}
	want := digest(base())
	if again := digest(base()); again != want {
		t.Fatalf("InputDigest of equal Specs: %s and %s", want, again)
	}

	for _, tc := range []struct {
		name   string
		change func(*Spec)
	}{
		{"config", func(s *Spec) { s.Config.User = "65532" }},
		{"label", func(s *Spec) { s.Config.Labels["b"] = "3" }},
		{"data", func(s *Spec) { s.Files[1].Data = []byte("root:x:0:0::/root:/sbin/nologin\n") }},
		{"mode", func(s *Spec) { s.Files[1].Mode = 0o600 }},
		{"owner", func(s *Spec) { s.Files[0].UID = 1 }},
		{"path", func(s *Spec) { s.Files[0].Path = "/usr/bin/x" }},
		{"a directory", func(s *Spec) { s.Dirs = append(s.Dirs, Dir{Path: "/tmp"}) }},
		{"a link", func(s *Spec) { s.Symlinks = append(s.Symlinks, Symlink{Path: "/sbin", Target: "bin"}) }},
		{"created", func(s *Spec) { s.Created = s.created().AddDate(1, 0, 0) }},
	} {
		s := base()
		tc.change(&s)
		if digest(s) == want {
			t.Errorf("a changed %s leaves InputDigest unchanged", tc.name)
		}
	}

	// The host file's contents and bits count, not its name alone.
	if err := os.WriteFile(host, []byte("v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if digest(base()) == want {
		t.Error("new contents of a host file leave InputDigest unchanged")
	}
	if err := os.WriteFile(host, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(host, 0o700); err != nil {
		t.Fatal(err)
	}
	if digest(base()) == want {
		t.Error("new permission bits of a host file leave InputDigest unchanged")
	}
}
