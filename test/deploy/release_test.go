package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
)

// TestReleaseManifests runs `make release-manifests` and checks the one
// install YAML it renders: the base's objects with the image and version
// asked for, without the example cloud config and passwords (an upgrade
// re-applies the file and must not overwrite the operator's), and that a
// real apiserver takes it.
func TestReleaseManifests(t *testing.T) {
	const version, imageRef = "v9.8.7", "registry.example.com/infra/baremetal-ccm"
	out := filepath.Join(t.TempDir(), "install.yaml")
	mk := exec.Command("make", "--no-print-directory", "release-manifests",
		"VERSION="+version, "IMAGE="+imageRef+":"+version, "RELEASE_MANIFEST="+out, "KUBECTL="+k8sTool(t, "kubectl"))
	mk.Dir = repoPath(t, ".")
	if msg, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make release-manifests: %v\n%s", err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "# baremetal-ccm "+version+":") {
		t.Errorf("the file does not start by naming the release:\n%.200s", data)
	}
	objs := decodeObjects(t, string(data))
	ids := func(skip ...string) []string {
		var out []string
		for _, o := range render(t, repoPath(t, "manifests")) {
			if !slices.Contains(skip, o.GetKind()) {
				out = append(out, o.GetKind()+"/"+o.GetName())
			}
		}
		slices.Sort(out)
		return out
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName())
		if v := o.GetLabels()["app.kubernetes.io/version"]; v != version {
			t.Errorf("%s/%s: label app.kubernetes.io/version = %q, want %s", o.GetKind(), o.GetName(), v, version)
		}
	}
	slices.Sort(got)
	if want := ids("ConfigMap", "Secret"); !slices.Equal(got, want) {
		t.Errorf("objects %v, want the base's without its examples: %v", got, want)
	}
	var ds appsv1.DaemonSet
	convert(t, find(t, objs, "DaemonSet", daemonSetName), &ds)
	if img := ds.Spec.Template.Spec.Containers[0].Image; img != imageRef+":"+version {
		t.Errorf("DaemonSet image %q, want %s:%s", img, imageRef, version)
	}
	if ds.Spec.Template.Labels["app.kubernetes.io/version"] != version || ds.Spec.Selector.MatchLabels["app.kubernetes.io/version"] != "" {
		t.Errorf("pods labelled %v, selector %v: want the version on the pods, never in the (immutable) selector", ds.Spec.Template.Labels, ds.Spec.Selector.MatchLabels)
	}

	cp := controlplane.StartT(t)
	ensureKubeSystem(t, cp.Client)
	kubectl(t, "--kubeconfig="+cp.Kubeconfig, "apply", "--server-side", "-f", out)
	// An upgrade re-applies the file.
	kubectl(t, "--kubeconfig="+cp.Kubeconfig, "apply", "--server-side", "-f", out)
}
