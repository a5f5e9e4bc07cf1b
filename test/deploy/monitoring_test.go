package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

const (
	monitoringComponent = "manifests/components/monitoring"
	metricsReader       = "baremetal-ccm-metrics-reader"
)

// renderWithMonitoring renders the base with the monitoring component, as
// an overlay of a user adds it.
func renderWithMonitoring(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	dir := t.TempDir()
	// kustomize takes relative paths only.
	rel := func(p string) string {
		r, err := filepath.Rel(dir, repoPath(t, p))
		if err != nil {
			t.Fatal(err)
		}
		return filepath.ToSlash(r)
	}
	overlay := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " +
		rel("manifests") + "\ncomponents:\n- " + rel(monitoringComponent) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
		t.Fatal(err)
	}
	return render(t, dir)
}

// promtool returns the path of promtool (Debian's prometheus package,
// which .ci/run installs); fabric.RequireAll fails the test under CI=true
// when it is missing, and skips it otherwise.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		fabric.RequireAll(t, "the PrometheusRule test", []string{"promtool (Debian package prometheus)"})
	}
	return p
}

// TestPrometheusRules checks the component's PrometheusRule with promtool:
// the rules parse (check rules), and each alert fires on what it is about
// and not on healthy values (test rules, testdata/prometheus-rules-test.yaml).
func TestPrometheusRules(t *testing.T) {
	tool := promtool(t)
	objs := renderWithMonitoring(t)
	rule := find(t, objs, "PrometheusRule", daemonSetName)
	spec, ok := rule.Object["spec"]
	if !ok {
		t.Fatal("the PrometheusRule has no spec")
	}
	rules, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(repoPath(t, "test/deploy/testdata/prometheus-rules-test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules-test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules-test.yaml"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, tool, args...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	}
	// Every alert has a test: an alert nobody tested is one that may never fire.
	for _, g := range spec.(map[string]any)["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			name, _ := r.(map[string]any)["alert"].(string)
			if name != "" && !strings.Contains(string(tests), "alertname: "+name+"\n") {
				t.Errorf("alert %s has no promtool test in testdata/prometheus-rules-test.yaml", name)
			}
		}
	}
}

// TestMonitoringComponent: the component's Service finds the DaemonSet's
// pods on the secure port, and its ClusterRole grants exactly the GET of
// /metrics (TestCCMAsServiceAccount scrapes with it).
func TestMonitoringComponent(t *testing.T) {
	objs := renderWithMonitoring(t)
	var ds appsv1.DaemonSet
	convert(t, find(t, objs, "DaemonSet", daemonSetName), &ds)
	var svc v1.Service
	convert(t, find(t, objs, "Service", daemonSetName+"-metrics"), &svc)
	if svc.Namespace != ds.Namespace {
		t.Errorf("metrics Service in %q, the DaemonSet in %q", svc.Namespace, ds.Namespace)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("metrics Service selector %v does not select the DaemonSet's pods %v", svc.Spec.Selector, ds.Spec.Template.Labels)
	}
	securePort := ""
	for _, a := range ds.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--secure-port="); ok {
			securePort = v
		}
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != securePort {
		t.Errorf("metrics Service ports %v, want the secure port %s", svc.Spec.Ports, securePort)
	}
	sm := find(t, objs, "ServiceMonitor", daemonSetName)
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != svc.Spec.Ports[0].Name || eps[0].(map[string]any)["scheme"] != "https" {
		t.Errorf("ServiceMonitor endpoints %v, want port %q over https", eps, svc.Spec.Ports[0].Name)
	}
	role := metricsReaderRole(t, objs)
	want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].NonResourceURLs, want[0].NonResourceURLs) || !slices.Equal(role.Rules[0].Verbs, want[0].Verbs) || len(role.Rules[0].Resources) > 0 {
		t.Errorf("ClusterRole %s rules %v, want %v", metricsReader, role.Rules, want)
	}
}

// metricsReaderRole returns the component's ClusterRole for scrapers.
func metricsReaderRole(t *testing.T, objs []*unstructured.Unstructured) *rbacv1.ClusterRole {
	t.Helper()
	var role rbacv1.ClusterRole
	convert(t, find(t, objs, "ClusterRole", metricsReader), &role)
	return &role
}
