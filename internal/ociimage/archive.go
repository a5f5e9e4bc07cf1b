package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations of the index.json entry that name the image.
const (
	// AnnotationRefName is the OCI image layout's name of an entry: its tag
	// (what `skopeo copy oci-archive:FILE:TAG` selects by).
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationImageName is containerd's: the full reference
	// `ctr images import` names the image by.
	AnnotationImageName = "io.containerd.image.name"
)

// ParseReference checks an image reference for WriteArchive: a registry,
// a repository and a tag, all explicit ("registry.example/team/app:v1"),
// so that every tool names the image alike (none adds docker.io/library/
// or :latest).
func ParseReference(ref string) (name.Tag, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image reference %q: %w (want registry/repository:tag, each explicit)", ref, err)
	}
	return tag, nil
}

// dockerManifestEntry is one element of a docker-save manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// WriteArchive writes img as one tar file at path that holds both an OCI
// image layout (oci-layout, index.json, blobs/sha256/...) and a docker-save
// manifest.json naming the same blobs, as `docker save` writes since
// Docker 25:
//   - `ctr images import` reads the OCI layout and names the image by
//     index.json's io.containerd.image.name annotation, ref;
//   - `skopeo copy oci-archive:PATH ...` reads the OCI layout (its
//     org.opencontainers.image.ref.name is ref's tag);
//   - `crane push PATH REF` and `skopeo copy docker-archive:PATH ...` read
//     manifest.json, whose RepoTags holds ref.
//
// The file appears complete or not at all (it is written beside path and
// renamed).
func WriteArchive(path, ref string, img v1.Image) (err error) {
	tag, err := ParseReference(ref)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := writeArchive(tmp, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// archiveTime is every archive member's modification time.
var archiveTime = time.Unix(0, 0).UTC()

func writeArchive(w io.Writer, tag name.Tag, img v1.Image) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	manifestDigest, err := img.Digest()
	if err != nil {
		return err
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configDigest, err := img.ConfigName()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: archiveTime})
	}
	file := func(name string, size int64, body io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: archiveTime}); err != nil {
			return err
		}
		n, err := io.Copy(tw, body)
		if err == nil && n != size {
			err = fmt.Errorf("%s: %d bytes written, %d expected", name, n, size)
		}
		return err
	}
	bytesFile := func(name string, data []byte) error {
		return file(name, int64(len(data)), bytes.NewReader(data))
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	var layerNames []string
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = file(blob(d), size, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		layerNames = append(layerNames, blob(d))
	}
	if err := bytesFile(blob(configDigest), config); err != nil {
		return err
	}
	if err := bytesFile(blob(manifestDigest), manifest); err != nil {
		return err
	}

	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mediaType,
			Size:      int64(len(manifest)),
			Digest:    manifestDigest,
			Annotations: map[string]string{
				AnnotationImageName: tag.Name(),
				AnnotationRefName:   tag.TagStr(),
			},
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
		}},
	})
	if err != nil {
		return err
	}
	if err := bytesFile("index.json", index); err != nil {
		return err
	}
	dockerManifest, err := json.Marshal([]dockerManifestEntry{{
		Config:   blob(configDigest),
		RepoTags: []string{tag.Name()},
		Layers:   layerNames,
	}})
	if err != nil {
		return err
	}
	if err := bytesFile("manifest.json", dockerManifest); err != nil {
		return err
	}
	if err := bytesFile("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	return tw.Close()
}
