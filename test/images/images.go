// Package images builds the container images of the real-node lab without
// Docker or a registry (docs/images.md): the control plane's and
// kube-proxy's images named as kubeadm v1.37.2 expects them under the
// lab's imageRepository, etcd, pause, the CCM image (the one `make image`
// builds) and the netserver workload. Each is one archive that
// `ctr -n k8s.io images import` takes (Import).
package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/baremetal-ccm/baremetal-ccm/internal/ccmimage"
)

// The versions kubeadm v1.37.2 names its images by (`kubeadm config images
// list`): the Kubernetes version, constants.DefaultEtcdVersion and
// constants.PauseVersion of cmd/kubeadm/app/constants.
const (
	KubernetesVersion = "v1.37.2"
	EtcdTag           = "3.7.0-0"
	PauseTag          = "3.10.2"
	// EtcdVersion is the etcd the etcd image holds (hack/build-etcd.sh).
	EtcdVersion = "3.7.0"
	// NetserverTag is the workload image's tag.
	NetserverTag = "lab"
)

// DefaultRepository is the lab's kubeadm imageRepository. Nothing is ever
// pulled from it: every image is imported, pods use imagePullPolicy
// IfNotPresent or Never.
const DefaultRepository = "registry.lab.example/k8s"

// Options says what BuildLab builds from and where it writes.
type Options struct {
	// Dir receives the archives and the Go programs built for them. An
	// archive whose inputs are unchanged since a former BuildLab into
	// the same Dir is reused.
	Dir string
	// K8sBinDir holds kube-apiserver, kube-controller-manager,
	// kube-scheduler and kube-proxy (hack/build-k8s.sh).
	K8sBinDir string
	// EtcdBinDir holds etcd (hack/build-etcd.sh).
	EtcdBinDir string
	// Repository is kubeadm's imageRepository; DefaultRepository if "".
	Repository string
	// CCMBinary is a static build of the CCM (make build).
	CCMBinary string
	// CCMTags are the tags of the CCM image, one archive each: two tags
	// make two images (they differ in their version label) for a rolling
	// update.
	CCMTags []string
	// AgnhostBinary, if set, is the static agnhost program
	// (hack/build-e2e.sh), and BuildLab also builds the agnhost image that
	// Kubernetes' e2e tests start (AgnhostImage, E2ERepoList). Only the
	// upstream e2e run needs it.
	AgnhostBinary string
	// CoreDNSBinary, if set, is the static CoreDNS program
	// (hack/build-coredns.sh), and BuildLab also builds the image of
	// kubeadm's CoreDNS addon (CoreDNSImage). Only the upstream e2e run
	// needs cluster DNS.
	CoreDNSBinary string
}

// Archive is an image archive and the reference it imports as.
type Archive struct {
	Path, Ref string
}

// Reference is the reference of image name (kube-apiserver, etcd, pause,
// netserver, ...) under the Options' repository with tag.
func (o Options) Reference(name, tag string) string {
	return o.repository() + "/" + name + ":" + tag
}

// PauseImage is the pause image's reference, what containerd's
// pinned_images.sandbox names.
func (o Options) PauseImage() string { return o.Reference("pause", PauseTag) }

// NetserverImage is the workload image's reference.
func (o Options) NetserverImage() string { return o.Reference("netserver", NetserverTag) }

// AgnhostImage is the agnhost image's reference, the one the e2e
// framework asks for given E2ERepoList.
func (o Options) AgnhostImage() string { return o.Reference("agnhost", AgnhostTag) }

// CCMImage is the CCM image's reference for tag; it does not depend on the
// repository (manifests/ names it so).
func CCMImage(tag string) string { return ccmimage.Reference(tag) }

func (o Options) repository() string {
	if o.Repository == "" {
		return DefaultRepository
	}
	return strings.TrimSuffix(o.Repository, "/")
}

func (o Options) validate() error {
	var errs []error
	for _, f := range []struct{ name, value string }{
		{"Dir", o.Dir}, {"K8sBinDir", o.K8sBinDir}, {"EtcdBinDir", o.EtcdBinDir}, {"CCMBinary", o.CCMBinary},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("images: Options.%s is empty", f.name))
		}
	}
	if len(o.CCMTags) == 0 {
		errs = append(errs, errors.New("images: Options.CCMTags is empty"))
	}
	seen := map[string]bool{}
	for _, tag := range o.CCMTags {
		if seen[tag] {
			errs = append(errs, fmt.Errorf("images: Options.CCMTags names %q twice", tag))
		}
		seen[tag] = true
	}
	return errors.Join(errs...)
}

// BuildLab builds every image of the lab into o.Dir and returns their
// archives: kube-apiserver, kube-controller-manager, kube-scheduler,
// kube-proxy, etcd, pause and netserver under o.Repository, then the CCM
// image for each of o.CCMTags, then agnhost and CoreDNS if their binaries
// are set. It builds the Go programs of the pause and netserver images
// (`go build`, CGO off) from this repository, so it runs with the working
// directory inside it (as a test does).
func BuildLab(ctx context.Context, o Options) ([]Archive, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := checkVersions(ctx, o); err != nil {
		return nil, err
	}
	images, err := labImages(ctx, o)
	if err != nil {
		return nil, err
	}
	var out []Archive
	for _, img := range images {
		a := Archive{Path: filepath.Join(o.Dir, archiveName(img.ref)), Ref: img.ref}
		if err := writeCached(a, img.spec); err != nil {
			return nil, fmt.Errorf("images: %s: %w", img.ref, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// archiveName is the file name of ref's archive: "kube-proxy_v1.37.2.tar".
func archiveName(ref string) string {
	repo, tag, _ := strings.Cut(ref[strings.LastIndex(ref, "/")+1:], ":")
	return repo + "_" + tag + ".tar"
}
