package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadFile checks that only a regular file within the limit is read,
// through symbolic links as a mounted ConfigMap has them, and that a FIFO
// is refused at once instead of waiting for a writer.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	small := write("small", []byte("region: lab\n"))
	exact := write("exact", bytes.Repeat([]byte("a"), 64))
	big := write("big", bytes.Repeat([]byte("a"), 65))
	link := filepath.Join(dir, "link")
	if err := os.Symlink(small, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       string // content, or a substring of the error
		ok         bool
	}{
		{"regular file", small, "region: lab\n", true},
		{"symbolic link", link, "region: lab\n", true},
		{"at the limit", exact, strings.Repeat("a", 64), true},
		{"over the limit", big, "65 bytes, more than the 64 allowed", false},
		{"FIFO", fifo, "named pipe (FIFO), not a regular file", false},
		{"directory", dir, "directory, not a regular file", false},
		{"missing", filepath.Join(dir, "none"), "no such file", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadFile(tc.path, 64)
			if tc.ok {
				if err != nil || string(got) != tc.want {
					t.Errorf("ReadFile(%s) = %q, %v, want %q", tc.path, got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadFile(%s) = %q, %v, want an error saying %q", tc.path, got, err, tc.want)
			}
		})
	}
}

// TestLoadBoundsTheFile checks that Load refuses a file over MaxFileSize
// with an error naming the limit.
func TestLoadBoundsTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cloud.yaml")
	data := append([]byte("region: lab\n#"), bytes.Repeat([]byte("x"), MaxFileSize)...)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "more than the 1048576 allowed") {
		t.Errorf("Load(%d bytes) = %v, want an error naming the limit", len(data), err)
	}
}
