package ociimage

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// TestWriteArchive writes an archive and reads it back the ways its
// consumers do: as an OCI image layout (what ctr and skopeo's oci-archive
// read) and as a docker-save tarball (what crane push reads, through this
// very function of go-containerregistry). The real `ctr images import`
// reads it in test/images.
func TestWriteArchive(t *testing.T) {
	const ref = "registry.example/team/app:v1.2.3"
	img, err := Build(Spec{
		Files:  []File{{Path: "/app", Data: []byte("app"), Mode: 0o755}},
		Config: Config{Entrypoint: []string{"/app"}, User: "65532:65532"},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	archive := filepath.Join(dir, "app.tar")
	if err := WriteArchive(archive, ref, img); err != nil {
		t.Fatalf("WriteArchive: %v", err)
	}
	digest, _ := img.Digest()
	configName, _ := img.ConfigName()
	layers, _ := img.Layers()
	layerDigest, _ := layers[0].Digest()

	members := archiveMembers(t, archive)
	wantNames := []string{
		"blobs/", "blobs/sha256/",
		"blobs/sha256/" + layerDigest.Hex,
		"blobs/sha256/" + configName.Hex,
		"blobs/sha256/" + digest.Hex,
		"index.json", "manifest.json", "oci-layout",
	}
	if diff := cmp.Diff(wantNames, slices.Collect(mapKeysInOrder(members))); diff != "" {
		t.Errorf("archive members (-want +got):\n%s", diff)
	}

	var index v1.IndexManifest
	if err := json.Unmarshal(members["index.json"].data, &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json has %d manifests, want 1", len(index.Manifests))
	}
	got := index.Manifests[0]
	if got.Digest != digest || got.Platform == nil || got.Platform.OS != "linux" {
		t.Errorf("index.json manifest %s platform %v, want %s for linux", got.Digest, got.Platform, digest)
	}
	if diff := cmp.Diff(map[string]string{AnnotationImageName: ref, AnnotationRefName: "v1.2.3"}, got.Annotations); diff != "" {
		t.Errorf("index.json annotations (-want +got):\n%s", diff)
	}
	var dockerManifest []dockerManifestEntry
	if err := json.Unmarshal(members["manifest.json"].data, &dockerManifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	wantDocker := []dockerManifestEntry{{Config: "blobs/sha256/" + configName.Hex, RepoTags: []string{ref}, Layers: []string{"blobs/sha256/" + layerDigest.Hex}}}
	if diff := cmp.Diff(wantDocker, dockerManifest); diff != "" {
		t.Errorf("manifest.json (-want +got):\n%s", diff)
	}

	// As a docker-save tarball: crane push loads it with this call.
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, tagArg := range []*name.Tag{nil, &tag} {
		fromTarball, err := tarball.ImageFromPath(archive, tagArg)
		if err != nil {
			t.Fatalf("tarball.ImageFromPath(%v): %v", tagArg, err)
		}
		if err := validate.Image(fromTarball); err != nil {
			t.Errorf("the docker-save view does not validate: %v", err)
		}
		if gotConfig, _ := fromTarball.ConfigName(); gotConfig != configName {
			t.Errorf("the docker-save view's config is %s, want %s", gotConfig, configName)
		}
	}

	// As an OCI image layout, unpacked (what skopeo does with oci-archive:).
	layoutDir := filepath.Join(dir, "layout")
	for name, m := range members {
		p := filepath.Join(layoutDir, name)
		if strings.HasSuffix(name, "/") {
			mustMkdir(t, p)
			continue
		}
		mustMkdir(t, filepath.Dir(p))
		if err := os.WriteFile(p, m.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		t.Fatalf("as an OCI layout: %v", err)
	}
	fromLayout, err := idx.Image(digest)
	if err != nil {
		t.Fatalf("as an OCI layout, image %s: %v", digest, err)
	}
	if err := validate.Image(fromLayout); err != nil {
		t.Errorf("the OCI layout view does not validate: %v", err)
	}

	// Writing again replaces the file, and leaves no temporary file.
	if err := WriteArchive(archive, ref, img); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"app.tar", "layout"}, names); diff != "" {
		t.Errorf("directory after two writes (-want +got):\n%s", diff)
	}
}

func TestParseReference(t *testing.T) {
	for _, tc := range []struct {
		ref string
		ok  bool
	}{
		{"registry.lab.example/k8s/etcd:3.7.0-0", true},
		{"ghcr.io/baremetal-ccm/baremetal-cloud-controller-manager:v0.0.0-g2c8147d-dirty", true},
		{"localhost:5000/app:v1", true},
		{"app:v1", false},                    // no registry: docker.io/library/ would be implied
		{"registry.example/app", false},      // no tag: :latest would be implied
		{"registry.example/App:v1", false},   // repositories are lower case
		{"registry.example/app:v1 x", false}, // not a tag
		{"registry.example/app@sha256:" + strings.Repeat("a", 64), false},
	} {
		_, err := ParseReference(tc.ref)
		if (err == nil) != tc.ok {
			t.Errorf("ParseReference(%q) = %v, want ok=%v", tc.ref, err, tc.ok)
		}
	}
	if err := WriteArchive(filepath.Join(t.TempDir(), "x.tar"), "app:v1", nil); err == nil || !strings.Contains(err.Error(), `"app:v1"`) {
		t.Errorf(`WriteArchive with "app:v1" = %v, want an error naming the reference`, err)
	}
}

type archiveMember struct {
	order int
	data  []byte
}

func archiveMembers(t *testing.T, p string) map[string]archiveMember {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]archiveMember{}
	tr := tar.NewReader(f)
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = archiveMember{i, data}
	}
}

// mapKeysInOrder yields the archive's member names in archive order.
func mapKeysInOrder(m map[string]archiveMember) func(func(string) bool) {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return m[a].order - m[b].order })
	return slices.Values(names)
}
