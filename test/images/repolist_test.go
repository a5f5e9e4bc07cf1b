package images

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// TestE2ERepoList checks that the KUBE_TEST_REPO_LIST file maps every
// registry of the e2e framework to the lab's repository, so that the
// references the framework builds from it (manifest.go: "%s/%s:%s" of
// registry, name, version) are the lab's images.
func TestE2ERepoList(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		repo string
	}{
		{name: "default repository", o: Options{}, repo: DefaultRepository},
		{name: "repository with a trailing slash", o: Options{Repository: "registry.example/lab/"}, repo: "registry.example/lab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "repo-list.yaml")
			if err := tc.o.WriteE2ERepoList(path); err != nil {
				t.Fatalf("WriteE2ERepoList: %v", err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]string
			if err := yaml.UnmarshalStrict(data, &got); err != nil {
				t.Fatalf("the repo list is not a YAML map of strings: %v\n%s", err, data)
			}
			want := map[string]string{
				"promoterE2eRegistry":      tc.repo,
				"buildImageRegistry":       tc.repo,
				"gcEtcdRegistry":           tc.repo,
				"gcRegistry":               tc.repo,
				"sigStorageRegistry":       tc.repo,
				"privateRegistry":          tc.repo,
				"dockerLibraryRegistry":    tc.repo,
				"cloudProviderGcpRegistry": tc.repo,
				"invalidRegistry":          tc.repo + "/invalid",
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("repo list (-want +got):\n%s", diff)
			}

			// manifest.go, v1.37.2: configs[Agnhost] = {promoterE2eRegistry,
			// "agnhost", "2.66.1"}, configs[Pause] = {gcRegistry, "pause", "3.10.2"}.
			if ref := fmt.Sprintf("%s/%s:%s", got["promoterE2eRegistry"], "agnhost", "2.66.1"); ref != tc.o.AgnhostImage() {
				t.Errorf("the framework asks for %s, AgnhostImage() = %s", ref, tc.o.AgnhostImage())
			}
			if ref := fmt.Sprintf("%s/%s:%s", got["gcRegistry"], "pause", "3.10.2"); ref != tc.o.PauseImage() {
				t.Errorf("the framework asks for %s, PauseImage() = %s", ref, tc.o.PauseImage())
			}
		})
	}
}
