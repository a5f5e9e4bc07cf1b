package ociimage

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// member is what a test checks of one layer member.
type member struct {
	Type     byte
	Mode     int64
	UID, GID int
	Link     string
	Data     string
	ModTime  time.Time
}

// layerMembers reads the image's only layer.
func layerMembers(t *testing.T, img v1.Image) (names []string, members map[string]member) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("image has %d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	members = map[string]member{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := members[hdr.Name]; dup {
			t.Errorf("layer holds %s twice", hdr.Name)
		}
		names = append(names, hdr.Name)
		members[hdr.Name] = member{hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Linkname, string(data), hdr.ModTime.UTC()}
	}
	return names, members
}

func TestBuildLayer(t *testing.T) {
	host := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(host, []byte("#!/bin/true\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(0, 0).UTC()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		spec  Spec
		names []string
		want  map[string]member
	}{{
		name:  "parents are implied, root-owned 0755; a Data file defaults to 0644",
		spec:  Spec{Files: []File{{Path: "/etc/ssl/certs/ca.crt", Data: []byte("pem")}}},
		names: []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca.crt"},
		want: map[string]member{
			"etc/":                 {Type: tar.TypeDir, Mode: 0o755, ModTime: epoch},
			"etc/ssl/":             {Type: tar.TypeDir, Mode: 0o755, ModTime: epoch},
			"etc/ssl/certs/":       {Type: tar.TypeDir, Mode: 0o755, ModTime: epoch},
			"etc/ssl/certs/ca.crt": {Type: tar.TypeReg, Mode: 0o644, Data: "pem", ModTime: epoch},
		},
	}, {
		name: "a host file keeps its bits unless Mode says; named directories, owners, sticky bit, links",
		spec: Spec{
			Files: []File{
				{Path: "/usr/local/bin/prog", Source: host},
				{Path: "/usr/local/bin/prog-0555", Source: host, Mode: 0o555, UID: 65532, GID: 65532},
			},
			Dirs:     []Dir{{Path: "/tmp", Mode: 0o777 | os.ModeSticky}, {Path: "/home/nonroot/", Mode: 0o700, UID: 65532, GID: 65532}},
			Symlinks: []Symlink{{Path: "/bin", Target: "usr/local/bin"}},
			Created:  created,
		},
		names: []string{"bin", "home/", "home/nonroot/", "tmp/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/prog", "usr/local/bin/prog-0555"},
		want: map[string]member{
			"bin":                     {Type: tar.TypeSymlink, Mode: 0o777, Link: "usr/local/bin", ModTime: created},
			"home/":                   {Type: tar.TypeDir, Mode: 0o755, ModTime: created},
			"home/nonroot/":           {Type: tar.TypeDir, Mode: 0o700, UID: 65532, GID: 65532, ModTime: created},
			"tmp/":                    {Type: tar.TypeDir, Mode: 0o1777, ModTime: created},
			"usr/":                    {Type: tar.TypeDir, Mode: 0o755, ModTime: created},
			"usr/local/":              {Type: tar.TypeDir, Mode: 0o755, ModTime: created},
			"usr/local/bin/":          {Type: tar.TypeDir, Mode: 0o755, ModTime: created},
			"usr/local/bin/prog":      {Type: tar.TypeReg, Mode: 0o750, Data: "#!/bin/true\n", ModTime: created},
			"usr/local/bin/prog-0555": {Type: tar.TypeReg, Mode: 0o555, UID: 65532, GID: 65532, Data: "#!/bin/true\n", ModTime: created},
		},
	}, {
		name: "the same entry asked for twice is one member",
		spec: Spec{
			Files:    []File{{Path: "/a/f", Data: []byte("x")}, {Path: "/a//f", Data: []byte("x")}},
			Symlinks: []Symlink{{Path: "/l", Target: "/a/f"}, {Path: "/l", Target: "/a/f"}},
		},
		names: []string{"a/", "a/f", "l"},
		want: map[string]member{
			"a/":  {Type: tar.TypeDir, Mode: 0o755, ModTime: epoch},
			"a/f": {Type: tar.TypeReg, Mode: 0o644, Data: "x", ModTime: epoch},
			"l":   {Type: tar.TypeSymlink, Mode: 0o777, Link: "/a/f", ModTime: epoch},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Build(tc.spec)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			names, members := layerMembers(t, img)
			if diff := cmp.Diff(tc.names, names); diff != "" {
				t.Errorf("layer member order (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, members); diff != "" {
				t.Errorf("layer members (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildConfig(t *testing.T) {
	spec := Spec{
		Files: []File{{Path: "/app", Data: []byte("binary"), Mode: 0o755}},
		Config: Config{
			Entrypoint: []string{"/app"},
			Cmd:        []string{"--flag"},
			Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
			User:       "65532:65532",
			WorkingDir: "/",
			Labels:     map[string]string{"org.opencontainers.image.source": "https://example.com/repo"},
		},
	}
	img, err := Build(spec)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	want := v1.Config{
		Entrypoint: []string{"/app"},
		Cmd:        []string{"--flag"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		User:       "65532:65532",
		WorkingDir: "/",
		Labels:     map[string]string{"org.opencontainers.image.source": "https://example.com/repo"},
	}
	if diff := cmp.Diff(want, cf.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	layers, _ := img.Layers()
	diffID, err := layers[0].DiffID()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"os", cf.OS, "linux"},
		{"architecture", cf.Architecture, runtime.GOARCH},
		{"created", cf.Created.UTC(), time.Unix(0, 0).UTC()},
		{"rootfs diff IDs", cf.RootFS.DiffIDs, []v1.Hash{diffID}},
		{"history entries", len(cf.History), 1},
	} {
		if !cmp.Equal(tc.got, tc.want) {
			t.Errorf("config %s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	mt, _ := img.MediaType()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	lmt, _ := layers[0].MediaType()
	if mt != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || lmt != types.OCILayer {
		t.Errorf("media types: manifest %s, config %s, layer %s; want the OCI ones", mt, m.Config.MediaType, lmt)
	}

	// Reproducible: the same Spec gives the same image.
	again, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds of one Spec: digests %s and %s", d1, d2)
	}
}

func TestBuildRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		want string // in the error
	}{
		{"relative path", Spec{Files: []File{{Path: "etc/passwd", Data: []byte("x")}}}, `"etc/passwd": must be absolute`},
		{"the root", Spec{Dirs: []Dir{{Path: "/"}}}, "is the image's root"},
		{"neither source nor data", Spec{Files: []File{{Path: "/f"}}}, "exactly one of Source"},
		{"both source and data", Spec{Files: []File{{Path: "/f", Source: "/etc/hostname", Data: []byte("x")}}}, "exactly one of Source"},
		{"mode with a type bit", Spec{Files: []File{{Path: "/f", Data: []byte("x"), Mode: os.ModeDir | 0o755}}}, "more than permission bits"},
		{"negative owner", Spec{Dirs: []Dir{{Path: "/d", UID: -1}}}, "out of range"},
		{"one path, two kinds", Spec{Files: []File{{Path: "/x", Data: []byte("x")}}, Dirs: []Dir{{Path: "/x"}}}, "/x is asked for as a directory and as a file"},
		{"one path, two contents", Spec{Files: []File{{Path: "/x", Data: []byte("a")}, {Path: "/x", Data: []byte("b")}}}, "/x is asked for as a file and as a file"},
		{"beneath a symbolic link", Spec{Files: []File{{Path: "/lib/libc.so", Data: []byte("x")}}, Symlinks: []Symlink{{Path: "/lib", Target: "usr/lib"}}}, "/lib/libc.so is beneath /lib, which is a symbolic link"},
		{"beneath a file", Spec{Files: []File{{Path: "/f", Data: []byte("x")}, {Path: "/f/g", Data: []byte("y")}}}, "/f/g is beneath /f, which is a file"},
		{"empty link target", Spec{Symlinks: []Symlink{{Path: "/l"}}}, "must be a non-empty path"},
		{"missing host file", Spec{Files: []File{{Path: "/f", Source: "/nonexistent/file"}}}, "/nonexistent/file"},
		{"host directory as a file", Spec{Files: []File{{Path: "/f", Source: "/etc"}}}, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
