// Package deploy tests what users install: the kustomize base in manifests/
// against a real kube-apiserver, the CCM running with the manifests'
// ServiceAccount and nothing more, the kubeadm configs in hack/kubeadm/ with
// the real kubeadm, and the Dockerfile's build command.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
)

// Names in manifests/ that the tests refer to.
const (
	namespace      = "kube-system"
	serviceAccount = "baremetal-cloud-controller-manager"
	daemonSetName  = "baremetal-cloud-controller-manager"
	configMapName  = "baremetal-ccm-cloud-config"
	secretName     = "baremetal-ccm-bgp-passwords"
	// image is what the Dockerfile's header says to tag the build with.
	image = "ghcr.io/baremetal-ccm/baremetal-cloud-controller-manager:v0.1.0"
)

// repoPath returns the absolute path of a file or directory of the repository.
func repoPath(t testing.TB, rel string) string {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, filepath.FromSlash(rel))
}

var (
	binDirOnce sync.Once
	binDir     string
	binDirErr  error
)

// k8sTool returns the path of kubectl or kubeadm as built by
// hack/build-k8s.sh (v1.37.2; the kubectl in $PATH may be anything).
func k8sTool(t testing.TB, name string) string {
	t.Helper()
	binDirOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		binDir, binDirErr = controlplane.BinDir(ctx)
	})
	if binDirErr != nil {
		controlplane.Unavailable(t, "no Kubernetes binaries: "+binDirErr.Error())
	}
	path := filepath.Join(binDir, name)
	if _, err := os.Stat(path); err != nil {
		controlplane.Unavailable(t, name+" is not in "+binDir+" (hack/build-k8s.sh builds it)")
	}
	return path
}

// kubectl runs the pinned kubectl and returns its stdout; it fails the test
// with stdout and stderr when kubectl fails.
func kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := runKubectl(t, args...)
	if err != nil {
		t.Fatalf("kubectl %q: %v", args, err)
	}
	return out
}

func runKubectl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, k8sTool(t, "kubectl"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(err.Error() + "\nstdout:\n" + stdout.String() + "\nstderr:\n" + stderr.String())
	}
	return stdout.String(), nil
}

// render returns the objects of a kustomization as kubectl builds them.
func render(t testing.TB, dir string) []*unstructured.Unstructured {
	t.Helper()
	return decodeObjects(t, kubectl(t, "kustomize", dir))
}

func decodeObjects(t testing.TB, docs string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(docs)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("reading YAML: %v", err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Fatalf("decoding YAML: %v\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
}

// find returns the rendered object of this kind and name; it fails the test
// when there is none.
func find(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("manifests: no %s %q", kind, name)
	return nil
}

// convert decodes an unstructured object into a typed one, refusing fields
// the type does not have (a typo in a manifest).
func convert(t testing.TB, obj *unstructured.Unstructured, into any) {
	t.Helper()
	data, err := obj.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
}
