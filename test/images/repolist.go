package images

import (
	"fmt"
	"slices"
	"strings"
)

// The registries Kubernetes' e2e framework names its test images by
// (test/utils/image/manifest.go, RegistryList, v1.37.2), each the key of
// a KUBE_TEST_REPO_LIST file.
var e2eRegistryKeys = []string{
	"promoterE2eRegistry",      // registry.k8s.io/e2e-test-images: agnhost, busybox, ...
	"buildImageRegistry",       // registry.k8s.io/build-image
	"gcEtcdRegistry",           // registry.k8s.io: etcd
	"gcRegistry",               // registry.k8s.io: pause
	"sigStorageRegistry",       // registry.k8s.io/sig-storage
	"privateRegistry",          // gcr.io/k8s-authenticated-test
	"dockerLibraryRegistry",    // docker.io/library
	"cloudProviderGcpRegistry", // registry.k8s.io/cloud-provider-gcp
}

// e2eInvalidRegistryKey names the registry of the image that tests expect
// to fail to pull.
const e2eInvalidRegistryKey = "invalidRegistry"

// E2ERepoList is a KUBE_TEST_REPO_LIST file for Kubernetes' e2e
// framework: every registry it names its images by is the Options'
// repository, where BuildLab puts them, so that a test asks for
// <repository>/agnhost:2.66.1 (AgnhostImage) and <repository>/pause:3.10.2
// (PauseImage), both imported into every node; an image BuildLab does not
// build is then missing on the nodes and its pod fails to start, rather
// than being pulled from outside. The invalid registry stays one that
// holds nothing: <repository>/invalid.
func (o Options) E2ERepoList() []byte {
	var b strings.Builder
	b.WriteString("# KUBE_TEST_REPO_LIST for Kubernetes " + KubernetesVersion + "'s e2e tests: every image under the lab's repository.\n")
	for _, key := range slices.Concat(e2eRegistryKeys, []string{e2eInvalidRegistryKey}) {
		repo := o.repository()
		if key == e2eInvalidRegistryKey {
			repo += "/invalid"
		}
		fmt.Fprintf(&b, "%s: %q\n", key, repo)
	}
	return []byte(b.String())
}

// WriteE2ERepoList writes E2ERepoList to path, for e2e.test to read as
// KUBE_TEST_REPO_LIST.
func (o Options) WriteE2ERepoList(path string) error {
	return writeFileAtomic(path, o.E2ERepoList())
}
