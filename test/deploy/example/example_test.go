// Package example checks the example cloud config that manifests/ ships:
// that the binary's own validation accepts it, and that it fits the
// DaemonSet's mounts and the example Secret.
package example

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
)

func manifestsDir(t *testing.T) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "manifests")
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(manifestsDir(t), filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// kustomization is the part of manifests/kustomization.yaml the example
// lives in.
type kustomization struct {
	ConfigMapGenerator []generator `json:"configMapGenerator"`
	SecretGenerator    []generator `json:"secretGenerator"`
}

type generator struct {
	Name  string   `json:"name"`
	Files []string `json:"files"`
}

func generated(t *testing.T, gens []generator, name string) generator {
	t.Helper()
	for _, g := range gens {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("manifests/kustomization.yaml generates no %q", name)
	return generator{}
}

// optionalSetting is a '#' directly followed by YAML (a key, a list item, or
// the indentation of a nested key); '# ' followed by a word is prose.
var optionalSetting = regexp.MustCompile(`(?m)^([ \t]*)#([^ \t\n]|[ \t]{2})`)

// enableAll removes the '#' of every optional setting.
func enableAll(s string) string {
	return optionalSetting.ReplaceAllString(s, "$1$2")
}

func TestEnableAll(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"#machines:\n#- name: a\n#  type: b\n", "machines:\n- name: a\n  type: b\n"},
		{"  #holdTime: 9s\n", "  holdTime: 9s\n"},
		{"# an explanation\n  # routerID: prose\n#\n\n", "# an explanation\n  # routerID: prose\n#\n\n"},
		{"region: x # trailing\n", "region: x # trailing\n"},
	} {
		if got := enableAll(tc.in); got != tc.want {
			t.Errorf("enableAll(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestExampleCloudConfig parses manifests/cloud.yaml (the ConfigMap's) with the
// validation the binary runs before it starts anything, as shipped and with
// every optional setting enabled. Every passwordFile must be a key of the
// example Secret under the DaemonSet's mount of it; the test puts the
// Secret's files in a temporary directory in its place (the parser reads
// them).
func TestExampleCloudConfig(t *testing.T) {
	var k kustomization
	if err := yaml.Unmarshal(readFile(t, "kustomization.yaml"), &k); err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(readFile(t, "daemonset.yaml"), &ds); err != nil {
		t.Fatal(err)
	}
	const configMapName, secretName = "baremetal-ccm-cloud-config", "baremetal-ccm-bgp-passwords"
	cmGen := generated(t, k.ConfigMapGenerator, configMapName)
	if !slices.Equal(cmGen.Files, []string{"cloud.yaml"}) {
		t.Fatalf("ConfigMap %s is made of %v, want [cloud.yaml]", configMapName, cmGen.Files)
	}
	cloudYAML := string(readFile(t, "cloud.yaml"))

	// The Secret's keys are its files' names; the DaemonSet mounts them.
	mount := ""
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Secret == nil || v.Secret.SecretName != secretName {
			continue
		}
		for _, m := range ds.Spec.Template.Spec.Containers[0].VolumeMounts {
			if m.Name == v.Name {
				mount = m.MountPath
			}
		}
	}
	if mount == "" {
		t.Fatalf("the DaemonSet does not mount Secret %s", secretName)
	}
	dir := t.TempDir()
	var keys []string
	for _, f := range generated(t, k.SecretGenerator, secretName).Files {
		key := path.Base(f)
		keys = append(keys, key)
		if err := os.WriteFile(filepath.Join(dir, key), readFile(t, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct{ name, content string }{
		{"as shipped", cloudYAML},
		{"every optional setting enabled", enableAll(cloudYAML)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "as shipped" && tc.content == cloudYAML {
				t.Fatalf("the example has no optional setting to enable")
			}
			// Every passwordFile names a key of the Secret at its mount.
			var f config.File
			js, err := yaml.YAMLToJSON([]byte(tc.content))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(js, &f); err != nil {
				t.Fatal(err)
			}
			if f.BGP == nil || len(f.BGP.Peers) == 0 {
				t.Fatalf("the example has no bgp peers")
			}
			for _, p := range f.BGP.Peers {
				key, under := strings.CutPrefix(p.PasswordFile, mount+"/")
				if !under || !slices.Contains(keys, key) {
					t.Errorf("peer %s: passwordFile %q, want %s/<a key of Secret %s: %v>", p.Name, p.PasswordFile, mount, secretName, keys)
				}
			}

			content := strings.ReplaceAll(tc.content, mount+"/", dir+"/")
			cfg, err := config.Parse([]byte(content))
			if err != nil {
				t.Fatalf("the example cloud config is invalid:\n%v", err)
			}
			if len(cfg.Pools) == 0 || cfg.BGP.ASN == 0 || len(cfg.Racks) == 0 {
				t.Errorf("parsed example: %d pools, ASN %d, %d racks; want pools, an ASN and racks", len(cfg.Pools), cfg.BGP.ASN, len(cfg.Racks))
			}
		})
	}
}
