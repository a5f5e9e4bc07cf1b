package ociimage

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestParseLdd(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      []string
		err       string
	}{{
		name: "Debian 12 xtables-nft-multi",
		out: "\tlinux-vdso.so.1 (0x00007ffc5b5f2000)\n" +
			"\tlibxtables.so.12 => /lib/x86_64-linux-gnu/libxtables.so.12 (0x00007f4ab6327000)\n" +
			"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f4ab610a000)\n" +
			"\t/lib64/ld-linux-x86-64.so.2 (0x00007f4ab63ef000)\n",
		want: []string{"/lib/x86_64-linux-gnu/libxtables.so.12", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"},
	}, {
		name: "an older glibc's vDSO line",
		out:  "\tlinux-vdso.so.1 =>  (0x00007ffc5b5f2000)\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n",
		want: []string{"/lib/libc.so.6"},
	}, {
		name: "static",
		out:  "\tstatically linked\n",
	}, {
		name: "a library missing on the host",
		out:  "\tlibfoo.so.1 => not found\n\tlibbar.so.2 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n",
		err:  "libraries not found on this host: libfoo.so.1, libbar.so.2",
	}, {
		name: "a relative path",
		out:  "\tlibc.so.6 => lib/libc.so.6 (0x1)\n",
		err:  "is not an absolute path",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLdd(tc.out)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseLdd = %v, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseLdd (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAddHostFileMirrorsLinks builds a host layout like Debian's merged
// /usr with a soname link, and checks the image gets the same links and
// one copy of the file at its real path.
func TestAddHostFileMirrorsLinks(t *testing.T) {
	root := t.TempDir()
	mustMkdir(t, filepath.Join(root, "usr/lib/multiarch"))
	mustSymlink(t, "usr/lib", filepath.Join(root, "lib"))
	mustSymlink(t, "libfoo.so.1.2", filepath.Join(root, "usr/lib/multiarch/libfoo.so.1"))
	if err := os.WriteFile(filepath.Join(root, "usr/lib/multiarch/libfoo.so.1.2"), []byte("elf"), 0o644); err != nil {
		t.Fatal(err)
	}
	var s Spec
	if err := s.AddHostFile(filepath.Join(root, "lib/multiarch/libfoo.so.1")); err != nil {
		t.Fatalf("AddHostFile: %v", err)
	}
	want := Spec{
		Files: []File{{Path: filepath.Join(root, "usr/lib/multiarch/libfoo.so.1.2"), Source: filepath.Join(root, "usr/lib/multiarch/libfoo.so.1.2")}},
		Symlinks: []Symlink{
			{Path: filepath.Join(root, "lib"), Target: "usr/lib"},
			{Path: filepath.Join(root, "usr/lib/multiarch/libfoo.so.1"), Target: "libfoo.so.1.2"},
		},
	}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("Spec after AddHostFile (-want +got):\n%s", diff)
	}

	// A loop of links is an error, not a hang.
	mustSymlink(t, "b", filepath.Join(root, "a"))
	mustSymlink(t, "a", filepath.Join(root, "b"))
	if err := (&Spec{}).AddHostFile(filepath.Join(root, "a")); err == nil || !strings.Contains(err.Error(), "symbolic links") {
		t.Errorf("AddHostFile of a link loop = %v, want an error about symbolic links", err)
	}
}

// TestAddHostBinary adds a dynamically linked program of the host and
// checks that every library ldd lists resolves, inside the layer, to a
// copy of the host's file; as root it runs the program in a chroot of the
// unpacked layer.
func TestAddHostBinary(t *testing.T) {
	const prog = "/usr/bin/env" // coreutils: on every Debian, linked to libc
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var s Spec
	if err := s.AddHostBinary(ctx, prog, "/usr/local/bin/env-copy"); err != nil {
		t.Fatalf("AddHostBinary: %v", err)
	}
	img, err := Build(s)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	_, members := layerMembers(t, img)

	libs, err := sharedLibraries(ctx, prog)
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) < 2 {
		t.Fatalf("ldd %s lists %v: want libc and the loader at least", prog, libs)
	}
	for _, lib := range append(libs, "/usr/local/bin/env-copy") {
		got, ok := resolveInLayer(members, lib)
		if !ok {
			t.Errorf("%s does not resolve to a file in the layer", lib)
			continue
		}
		hostPath := lib
		if lib == "/usr/local/bin/env-copy" {
			hostPath = prog
		}
		host, err := os.ReadFile(hostPath)
		if err != nil {
			t.Fatal(err)
		}
		if got.Data != string(host) {
			t.Errorf("%s in the layer differs from the host's %s", lib, hostPath)
		}
	}

	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("running the program in a chroot needs root (CI=true: this test must run in CI)")
		}
		t.Skip("running the program in a chroot needs root")
	}
	dir := t.TempDir()
	unpackLayer(t, img, dir)
	cmd := exec.CommandContext(ctx, "/usr/local/bin/env-copy")
	cmd.Env = []string{"PROBE=from-the-image"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "PROBE=from-the-image" {
		t.Errorf("env in a chroot of the layer: %v, output %q; want PROBE=from-the-image", err, out)
	}
}

func TestAddHostTree(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tree := filepath.Join(t.TempDir(), "plugins")
	mustMkdir(t, filepath.Join(tree, "sub"))
	if err := os.WriteFile(filepath.Join(tree, "sub/notes.txt"), []byte("text"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "notes.txt", filepath.Join(tree, "sub/link"))
	elfFile, err := os.ReadFile("/usr/bin/env")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "plugin.so"), elfFile, 0o644); err != nil {
		t.Fatal(err)
	}
	var s Spec
	if err := s.AddHostTree(ctx, tree); err != nil {
		t.Fatalf("AddHostTree: %v", err)
	}
	img, err := Build(s)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	_, members := layerMembers(t, img)
	rel := strings.TrimPrefix(tree, "/")
	for name, want := range map[string]member{
		rel + "/sub/notes.txt": {Type: tar.TypeReg, Mode: 0o600, Data: "text"},
		rel + "/sub/link":      {Type: tar.TypeSymlink, Mode: 0o777, Link: "notes.txt"},
		rel + "/plugin.so":     {Type: tar.TypeReg, Mode: 0o644, Data: string(elfFile)},
	} {
		got := members[name]
		got.ModTime = time.Time{}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("layer member %s (-want +got):\n%s", name, diff)
		}
	}
	// The ELF file's libraries came along.
	libs, err := sharedLibraries(ctx, "/usr/bin/env")
	if err != nil {
		t.Fatal(err)
	}
	for _, lib := range libs {
		if _, ok := resolveInLayer(members, lib); !ok {
			t.Errorf("library %s of the tree's ELF file is not in the layer", lib)
		}
	}
}

// resolveInLayer follows p through the layer's symbolic links to a regular
// file, the way the kernel would inside the unpacked image.
func resolveInLayer(members map[string]member, p string) (member, bool) {
	for range maxLinks {
		cur := ""
		parts := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
		restart := false
		for i, part := range parts {
			next := path.Join(cur, part)
			m, ok := members[next]
			if !ok {
				m, ok = members[next+"/"]
			}
			if !ok {
				return member{}, false
			}
			if m.Type == tar.TypeSymlink {
				target := m.Link
				if !path.IsAbs(target) {
					target = path.Join("/", cur, target)
				}
				p = path.Join(append([]string{target}, parts[i+1:]...)...)
				restart = true
				break
			}
			if i == len(parts)-1 {
				return m, m.Type == tar.TypeReg
			}
			cur = next
		}
		if !restart {
			return member{}, false
		}
	}
	return member{}, false
}

// unpackLayer writes the image's layer into dir (the test's own layer:
// paths are trusted).
func unpackLayer(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(hdr.Mode).Perm())
		case tar.TypeSymlink:
			err = os.Symlink(hdr.Linkname, p)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, os.FileMode(hdr.Mode).Perm()); err == nil {
				_, err = io.Copy(f, tr)
				f.Close()
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}
