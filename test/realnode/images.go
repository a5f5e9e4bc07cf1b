package realnode

import (
	"context"
	"os"
	"path/filepath"

	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/images"
	"github.com/baremetal-ccm/baremetal-ccm/test/lab"
)

// CCMTags are the CCM image's tags in the lab: the install and a rolling
// update's target.
var CCMTags = []string{"lab-1", "lab-2"}

// ImageInputs are what BuildImages builds the lab's images from.
type ImageInputs struct {
	// K8sBinDir holds the Kubernetes binaries (hack/build-k8s.sh).
	K8sBinDir string
	// EtcdBinDir holds etcd (hack/build-etcd.sh).
	EtcdBinDir string
	// WorkDir receives the CCM binary built from this repository.
	WorkDir string
	// E2EBinDir (hack/build-e2e.sh) and CoreDNSBinDir
	// (hack/build-coredns.sh), if set, add the images of Kubernetes' e2e
	// tests: agnhost and kubeadm's CoreDNS (Options.Conformance). Their
	// builds are long, so only that run asks for them.
	E2EBinDir, CoreDNSBinDir string
}

// BuildImages builds the CCM from this repository into in.WorkDir, then
// the images every node imports (kubeadm's, the CCM's with CCMTags,
// netserver, and the e2e tests' if asked for) into the cache (reused
// while their inputs are unchanged), and returns the archives' paths.
func BuildImages(ctx context.Context, in ImageInputs) ([]string, error) {
	repo, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	ccm := filepath.Join(in.WorkDir, "baremetal-cloud-controller-manager")
	if err := lab.BuildBinary(ctx, repo, "./cmd/baremetal-cloud-controller-manager", ccm); err != nil {
		return nil, err
	}
	cache := os.Getenv("BMCCM_CACHE")
	if cache == "" {
		home, err := os.UserCacheDir()
		if err != nil {
			return nil, err
		}
		cache = filepath.Join(home, "baremetal-ccm")
	}
	o := imageOptions()
	o.Dir = filepath.Join(cache, "lab-images")
	o.K8sBinDir = in.K8sBinDir
	o.EtcdBinDir = in.EtcdBinDir
	o.CCMBinary = ccm
	o.CCMTags = CCMTags
	if in.E2EBinDir != "" {
		o.AgnhostBinary = filepath.Join(in.E2EBinDir, "agnhost")
	}
	if in.CoreDNSBinDir != "" {
		o.CoreDNSBinary = filepath.Join(in.CoreDNSBinDir, "coredns")
	}
	archives, err := images.BuildLab(ctx, o)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, a := range archives {
		paths = append(paths, a.Path)
	}
	return paths, nil
}

// imageOptions names the lab's images: under ImageRepository.
func imageOptions() images.Options { return images.Options{Repository: ImageRepository} }

// E2ERepoList is the KUBE_TEST_REPO_LIST file Up writes into a cluster's
// directory dir with Options.Conformance: every image the e2e framework
// names is looked for under ImageRepository, where the nodes have agnhost
// and pause.
func E2ERepoList(dir string) string { return filepath.Join(dir, "e2e-repo-list.yaml") }

// writeE2ERepoList writes the cluster's E2ERepoList.
func (c *Cluster) writeE2ERepoList() error {
	return imageOptions().WriteE2ERepoList(E2ERepoList(c.Opts.Dir))
}
