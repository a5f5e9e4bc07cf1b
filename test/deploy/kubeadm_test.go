package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
)

// kubeadmFiles returns every kubeadm configuration file in the repository:
// the YAML files that name the kubeadm.k8s.io API group, outside .git.
func kubeadmFiles(t *testing.T) []string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || (filepath.Ext(p) != ".yaml" && filepath.Ext(p) != ".yml") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(data), "apiVersion: kubeadm.k8s.io/") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("found no kubeadm configuration file (apiVersion: kubeadm.k8s.io/...) in the repository; hack/kubeadm/ should hold them")
	}
	return files
}

// TestKubeadmConfigs runs `kubeadm config validate` (the pinned kubeadm,
// strict about unknown fields) on every kubeadm file in the repository, and
// checks that every node they register runs its kubelet with
// --cloud-provider=external and a --node-ip.
func TestKubeadmConfigs(t *testing.T) {
	kubeadm := k8sTool(t, "kubeadm")
	files := kubeadmFiles(t)
	kinds := map[string]bool{}
	for _, f := range files {
		rel, _ := filepath.Rel(repoPath(t, "."), f)
		t.Run(filepath.ToSlash(rel), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, kubeadm, "config", "validate", "--config", f).CombinedOutput()
			if err != nil {
				t.Errorf("kubeadm config validate --config %s: %v\n%s", rel, err, out)
			}

			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, doc := range decodeObjects(t, string(data)) {
				kinds[doc.GetKind()] = true
				if doc.GetKind() != "InitConfiguration" && doc.GetKind() != "JoinConfiguration" {
					continue
				}
				if doc.GetAPIVersion() != "kubeadm.k8s.io/v1beta4" {
					t.Errorf("%s: apiVersion %s, want kubeadm.k8s.io/v1beta4", doc.GetKind(), doc.GetAPIVersion())
				}
				args := map[string][]string{}
				list, _ := doc.Object["nodeRegistration"].(map[string]any)["kubeletExtraArgs"].([]any)
				for _, a := range list {
					m, _ := a.(map[string]any)
					name, _ := m["name"].(string)
					value, _ := m["value"].(string)
					args[name] = append(args[name], value)
				}
				if got := args["cloud-provider"]; !slices.Equal(got, []string{"external"}) {
					t.Errorf("%s: kubelet cloud-provider %q, want [external]", doc.GetKind(), got)
				}
				if got := args["node-ip"]; len(got) != 1 || got[0] == "" {
					t.Errorf("%s: kubelet node-ip %q, want one value (the CCM keeps only the addresses it names)", doc.GetKind(), got)
				}
			}
		})
	}
	for _, kind := range []string{"InitConfiguration", "ClusterConfiguration", "JoinConfiguration"} {
		if !kinds[kind] {
			t.Errorf("no kubeadm file has a %s", kind)
		}
	}
}
