// Package ccmimage describes the baremetal cloud-controller-manager's
// container image as `make image` builds it without Docker: what the
// Dockerfile's final stage holds (a static binary as the entrypoint, run as
// nonroot 65532, CA certificates), on a minimal base made here instead of
// the distroless one. test/deploy checks that the two agree.
package ccmimage

import (
	"fmt"

	"github.com/baremetal-ccm/baremetal-ccm/internal/ociimage"
)

// Repository is the image's repository, the one manifests/ deploys.
const Repository = "ghcr.io/baremetal-ccm/baremetal-cloud-controller-manager"

// Binary is the binary's path in the image, its entrypoint.
const Binary = "/baremetal-cloud-controller-manager"

// User is the user:group the image runs as, the DaemonSet's runAsUser.
var User = fmt.Sprintf("%d:%d", ociimage.NonrootUID, ociimage.NonrootUID)

// Reference is the image's reference for a tag.
func Reference(tag string) string {
	return Repository + ":" + tag
}

// Spec is the image of binary, which must be static (built with
// CGO_ENABLED=0): the image has no libc. version goes in the
// org.opencontainers.image.version label: two tags of one binary are two
// images, as two releases would be.
func Spec(binary, version string) (ociimage.Spec, error) {
	dynamic, err := ociimage.DynamicallyLinked(binary)
	if err != nil {
		return ociimage.Spec{}, err
	}
	if dynamic {
		return ociimage.Spec{}, fmt.Errorf("%s is dynamically linked; the image has no libc: build it with CGO_ENABLED=0 (make build)", binary)
	}
	var s ociimage.Spec
	if err := s.AddStaticBase(); err != nil {
		return ociimage.Spec{}, err
	}
	s.Files = append(s.Files, ociimage.File{Path: Binary, Source: binary, Mode: 0o755})
	s.Config = ociimage.Config{
		Entrypoint: []string{Binary},
		Env:        []string{ociimage.StaticPath, "SSL_CERT_FILE=" + ociimage.CACertificates},
		User:       User,
		Labels: map[string]string{
			"org.opencontainers.image.title":   "baremetal-cloud-controller-manager",
			"org.opencontainers.image.version": version,
		},
	}
	return s, nil
}

// Write builds the image of binary, versioned by ref's tag, and writes it
// as an archive at path named ref (ociimage.WriteArchive). It returns the image's manifest
// digest.
func Write(binary, ref, path string) (string, error) {
	tag, err := ociimage.ParseReference(ref)
	if err != nil {
		return "", err
	}
	spec, err := Spec(binary, tag.TagStr())
	if err != nil {
		return "", err
	}
	img, err := ociimage.Build(spec)
	if err != nil {
		return "", err
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	return digest.String(), ociimage.WriteArchive(path, ref, img)
}
