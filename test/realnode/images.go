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

// BuildImages builds the CCM from this repository into workDir, then the
// images every node imports (kubeadm's, the CCM's with CCMTags,
// netserver) into the cache (reused while their inputs are unchanged),
// and returns the archives' paths.
func BuildImages(ctx context.Context, k8sBinDir, etcdBinDir, workDir string) ([]string, error) {
	repo, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	ccm := filepath.Join(workDir, "baremetal-cloud-controller-manager")
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
	archives, err := images.BuildLab(ctx, images.Options{
		Dir:        filepath.Join(cache, "lab-images"),
		K8sBinDir:  k8sBinDir,
		EtcdBinDir: etcdBinDir,
		Repository: ImageRepository,
		CCMBinary:  ccm,
		CCMTags:    CCMTags,
	})
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, a := range archives {
		paths = append(paths, a.Path)
	}
	return paths, nil
}
