// Command image writes the baremetal cloud-controller-manager's container
// image as an archive, without Docker or a registry (`make image`,
// docs/images.md). The binary is the one `make build` wrote, with the
// Dockerfile's build line.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/baremetal-ccm/baremetal-ccm/internal/ccmimage"
)

func main() {
	binary := flag.String("binary", "bin/baremetal-cloud-controller-manager", "the static binary to put in the image")
	ref := flag.String("ref", "", "the image reference, registry/repository:tag (default "+ccmimage.Repository+":<-tag>)")
	tag := flag.String("tag", "", "the tag, with the default repository")
	out := flag.String("o", "bin/baremetal-cloud-controller-manager-image.tar", "the archive to write")
	flag.Parse()
	if flag.NArg() > 0 {
		fail(fmt.Errorf("unexpected arguments %q", flag.Args()))
	}
	switch {
	case *ref == "" && *tag == "":
		fail(fmt.Errorf("give -ref or -tag"))
	case *ref != "" && *tag != "":
		fail(fmt.Errorf("give -ref or -tag, not both"))
	case *ref == "":
		*ref = ccmimage.Reference(*tag)
	}
	digest, err := ccmimage.Write(*binary, *ref, *out)
	if err != nil {
		fail(err)
	}
	fmt.Printf(`wrote %s
  image  %s
  digest %s (OCI manifest)

Load it into a node's containerd (the kubelet's namespace is k8s.io):
  ctr -n k8s.io images import %s
Push it to a registry (the same config and layer either way):
  skopeo copy oci-archive:%s docker://%s
      keeps this OCI manifest and its digest
  crane push %s %s
      writes a Docker v2 manifest instead, so another digest
`, *out, *ref, digest, *out, *out, *ref, *out, *ref)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(2)
}
