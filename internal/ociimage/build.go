package ociimage

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// createdBy is the history entry of every image's layer.
const createdBy = "baremetal-ccm internal/ociimage"

// Build makes the image the Spec describes: an OCI manifest with one
// gzip-compressed layer, for linux on the host's architecture (the host's
// binaries and libraries go into it). The compressed layer is held in
// memory; the host files are read once.
func Build(s Spec) (v1.Image, error) {
	entries, err := s.entries()
	if err != nil {
		return nil, err
	}
	created := s.created()

	var compressed bytes.Buffer
	zw, err := gzip.NewWriterLevel(&compressed, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if err := writeLayer(zw, entries, created); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	layerBytes := compressed.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}

	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: createdBy},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: slices.Clone(s.Config.Entrypoint),
		Cmd:        slices.Clone(s.Config.Cmd),
		Env:        slices.Clone(s.Config.Env),
		User:       s.Config.User,
		WorkingDir: s.Config.WorkingDir,
		Labels:     maps.Clone(s.Config.Labels),
	}
	return mutate.ConfigFile(img, cf)
}

// created is the Spec's creation time, the Unix epoch unless given, in UTC
// and whole seconds (what a tar header and the config hold alike).
func (s *Spec) created() time.Time {
	if s.Created.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return s.Created.UTC().Truncate(time.Second)
}
