package images

import (
	"fmt"

	"github.com/baremetal-ccm/baremetal-ccm/internal/ociimage"
)

// CoreDNSTag is the tag kubeadm v1.37.2 names its CoreDNS image by
// (constants.CoreDNSVersion of cmd/kubeadm/app/constants), under the
// cluster's imageRepository as <repository>/coredns:<tag>
// (images.GetDNSImage: the extra /coredns path element is only for
// registry.k8s.io).
const CoreDNSTag = "v1.14.6"

// coreDNSVersionLine is the first line `coredns -version` prints.
const coreDNSVersionLine = "CoreDNS-1.14.6"

// CoreDNSImage is the CoreDNS image's reference, the one kubeadm's addon
// Deployment names.
func (o Options) CoreDNSImage() string { return o.Reference("coredns", CoreDNSTag) }

// coreDNSSpec is the CoreDNS image around the static program
// (hack/build-coredns.sh): /coredns as the entrypoint, which kubeadm's
// Deployment starts with only its arguments (-conf /etc/coredns/Corefile,
// the ConfigMap mounted there).
//
// It runs as root, where upstream's image runs as nonroot with the file
// capability cap_net_bind_service on /coredns: the lab's image builder
// writes no extended attributes, and kubeadm's Deployment drops every
// capability but NET_BIND_SERVICE anyway, so root there binds port 53 and
// can do nothing else a nonroot user could not.
func coreDNSSpec(binary string) (ociimage.Spec, error) {
	s, err := binaryImage(binary, "/coredns")
	if err != nil {
		return ociimage.Spec{}, fmt.Errorf("coredns image: %w", err)
	}
	return s, nil
}
