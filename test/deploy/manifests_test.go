package deploy

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
)

// ensureKubeSystem waits for the apiserver to create kube-system, as it does
// at start-up, and creates it if it has not.
func ensureKubeSystem(t *testing.T, c kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
		return err == nil, nil
	})
	if err == nil {
		return
	}
	_, err = c.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", namespace, err)
	}
}

// applyManifests applies manifests/ as docs/install.md says to.
func applyManifests(t *testing.T, cp *controlplane.ControlPlane) {
	t.Helper()
	ensureKubeSystem(t, cp.Client)
	kubectl(t, "--kubeconfig="+cp.Kubeconfig, "apply", "--server-side", "-k", repoPath(t, "manifests"))
}

// TestManifests applies the kustomize base to a real kube-apiserver, first
// with --dry-run=server, then for real and again (an upgrade re-applies);
// then the overlay of docs/install.md that replaces the example cloud config
// and passwords; and checks that the ServiceAccount ends up with exactly the
// allow-listed permissions, asking the apiserver itself.
func TestManifests(t *testing.T) {
	cp := controlplane.StartT(t)
	ensureKubeSystem(t, cp.Client)
	base := repoPath(t, "manifests")
	kc := "--kubeconfig=" + cp.Kubeconfig

	out := kubectl(t, kc, "apply", "--server-side", "--dry-run=server", "-k", base)
	want := render(t, base)
	if n := strings.Count(out, "serverside-applied (server dry run)"); n != len(want) {
		t.Errorf("dry run: %d objects applied, want %d:\n%s", n, len(want), out)
	}
	if _, err := cp.Client.AppsV1().DaemonSets(namespace).Get(context.Background(), daemonSetName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after the dry run, getting the DaemonSet: %v, want NotFound", err)
	}

	for _, round := range []string{"install", "re-apply"} {
		out := kubectl(t, kc, "apply", "--server-side", "-k", base)
		if n := strings.Count(out, "serverside-applied"); n != len(want) {
			t.Errorf("%s: %d objects applied, want %d:\n%s", round, n, len(want), out)
		}
	}
	var gotIDs, wantIDs []string
	for _, o := range want {
		wantIDs = append(wantIDs, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	for _, o := range decodeObjects(t, kubectl(t, kc, "get", "-k", base, "-o", "yaml")) {
		gotIDs = append(gotIDs, listIDs(o.Object)...)
	}
	slices.Sort(gotIDs)
	slices.Sort(wantIDs)
	if !slices.Equal(gotIDs, wantIDs) {
		t.Errorf("objects in the cluster:\n got %v\nwant %v", gotIDs, wantIDs)
	}

	t.Run("overlay replaces the example config and passwords", func(t *testing.T) {
		testOverlay(t, cp, base)
	})
	t.Run("effective permissions are the allow-list", func(t *testing.T) {
		testEffectivePermissions(t, cp)
	})
}

// listIDs returns kind/namespace/name of each item of a List.
func listIDs(list map[string]any) []string {
	items, _ := list["items"].([]any)
	var ids []string
	for _, it := range items {
		o := unstructured.Unstructured{}
		o.Object, _ = it.(map[string]any)
		ids = append(ids, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	return ids
}

// testOverlay applies the overlay docs/install.md tells users to write:
// their cloud.yaml and password files replace the examples, under the same
// names, so the DaemonSet mounts them and a change is a hot reload.
func testOverlay(t *testing.T, cp *controlplane.ControlPlane, base string) {
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	cloudYAML := "region: lab\nracks:\n- name: rack-a\n  subnets: [198.51.100.0/25]\n"
	files := map[string]string{
		"cloud.yaml": cloudYAML,
		"tor-a":      "s3cret-a\n",
		"kustomization.yaml": fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
configMapGenerator:
- name: %s
  namespace: %s
  behavior: replace
  files: [cloud.yaml]
secretGenerator:
- name: %s
  namespace: %s
  behavior: replace
  files: [tor-a]
generatorOptions:
  disableNameSuffixHash: true
`, filepath.ToSlash(rel), configMapName, namespace, secretName, namespace),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kubectl(t, "--kubeconfig="+cp.Kubeconfig, "apply", "--server-side", "-k", dir)

	ctx := context.Background()
	cm, err := cp.Client.CoreV1().ConfigMaps(namespace).Get(ctx, configMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cm.Data["cloud.yaml"]; got != cloudYAML {
		t.Errorf("ConfigMap %s cloud.yaml after the overlay:\n got %q\nwant %q", configMapName, got, cloudYAML)
	}
	sec, err := cp.Client.CoreV1().Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gotKeys := slices.Sorted(maps.Keys(sec.Data))
	if !slices.Equal(gotKeys, []string{"tor-a"}) || string(sec.Data["tor-a"]) != "s3cret-a\n" {
		t.Errorf("Secret %s after the overlay: keys %v, tor-a %q; want only tor-a = %q (the example keys gone)", secretName, gotKeys, sec.Data["tor-a"], "s3cret-a\n")
	}
	ds, err := cp.Client.AppsV1().DaemonSets(namespace).Get(ctx, daemonSetName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			refs = append(refs, "ConfigMap/"+v.ConfigMap.Name)
		case v.Secret != nil:
			refs = append(refs, "Secret/"+v.Secret.SecretName)
		}
	}
	slices.Sort(refs)
	if want := []string{"ConfigMap/" + configMapName, "Secret/" + secretName}; !slices.Equal(refs, want) {
		t.Errorf("DaemonSet volumes after the overlay refer to %v, want %v", refs, want)
	}
}

// testEffectivePermissions asks the apiserver what the ServiceAccount may do
// (SelfSubjectRulesReview with its own token), subtracts what every
// ServiceAccount in kube-system may do, and compares the rest with the
// allow-list: this also covers the bootstrap role the manifests bind.
func testEffectivePermissions(t *testing.T, cp *controlplane.ControlPlane) {
	ctx := context.Background()
	const baseline = "deploy-test-baseline"
	if _, err := cp.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: baseline}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	allowedGrants := expand(allowed)
	for _, ns := range []string{namespace, "default"} {
		ours := reviewRules(t, cp, serviceAccount, ns)
		base := reviewRules(t, cp, baseline, ns)
		want := map[grant]bool{}
		for g := range allowedGrants {
			if g.scope == "" || g.scope == ns {
				g.scope = ns
				want[g] = true
			}
		}
		for g := range ours {
			if !base[g] && !want[g] {
				t.Errorf("in namespace %s the ServiceAccount may %q, which is not in the allow-list", ns, g)
			}
		}
		for g := range want {
			if !ours[g] {
				t.Errorf("in namespace %s the ServiceAccount may not %q, which the allow-list grants", ns, g)
			}
		}
	}
}

// reviewRules returns the grants a ServiceAccount of kube-system holds in a
// namespace, as the apiserver's authorizer reports them to the account.
func reviewRules(t *testing.T, cp *controlplane.ControlPlane, sa, ns string) map[grant]bool {
	t.Helper()
	c := serviceAccountClient(t, cp, sa)
	r, err := c.AuthorizationV1().SelfSubjectRulesReviews().Create(context.Background(), &authorizationv1.SelfSubjectRulesReview{
		Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectRulesReview as %s in %s: %v", sa, ns, err)
	}
	if r.Status.Incomplete {
		t.Fatalf("SelfSubjectRulesReview as %s in %s is incomplete: %s", sa, ns, r.Status.EvaluationError)
	}
	var rules []rbacv1.PolicyRule
	for _, rr := range r.Status.ResourceRules {
		rules = append(rules, rbacv1.PolicyRule{Verbs: rr.Verbs, APIGroups: rr.APIGroups, Resources: rr.Resources, ResourceNames: rr.ResourceNames})
	}
	for _, nr := range r.Status.NonResourceRules {
		rules = append(rules, rbacv1.PolicyRule{Verbs: nr.Verbs, NonResourceURLs: nr.NonResourceURLs})
	}
	grants, _ := rulesGrants(sa, ns, rules)
	out := map[grant]bool{}
	for g := range grants {
		out[g] = true
	}
	for _, nr := range r.Status.NonResourceRules {
		for _, u := range nr.NonResourceURLs {
			for _, v := range nr.Verbs {
				out[grant{scope: ns, resource: "nonResourceURL:" + u, verb: v}] = true
			}
		}
	}
	return out
}

// tokenLifetime is far longer than a test.
var tokenLifetime = int64(3600)

// serviceAccountToken returns a token of a kube-system ServiceAccount from
// the TokenRequest API, as the kubelet gets one for a pod.
func serviceAccountToken(t *testing.T, cp *controlplane.ControlPlane, sa string) string {
	t.Helper()
	tr, err := cp.Client.CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &tokenLifetime},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", namespace, sa, err)
	}
	return tr.Status.Token
}

// serviceAccountKubeconfig writes a kubeconfig with a ServiceAccount's token.
func serviceAccountKubeconfig(t *testing.T, cp *controlplane.ControlPlane, sa string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), sa+".kubeconfig")
	if err := cp.WriteTokenKubeconfig(p, serviceAccountToken(t, cp, sa)); err != nil {
		t.Fatal(err)
	}
	return p
}

func serviceAccountClient(t *testing.T, cp *controlplane.ControlPlane, sa string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", serviceAccountKubeconfig(t, cp, sa))
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDaemonSet checks the rendered DaemonSet against what issue 7 and
// docs/reference/manifests.md promise, and against the other objects it refers to.
func TestDaemonSet(t *testing.T) {
	objs := render(t, repoPath(t, "manifests"))
	var ds appsv1.DaemonSet
	convert(t, find(t, objs, "DaemonSet", daemonSetName), &ds)
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	args := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
		}
	}
	tolerated := map[string]bool{}
	for _, tol := range pod.Tolerations {
		tolerated[tol.Key+":"+string(tol.Effect)] = true
	}
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatalf("pod and container securityContext are required")
	}
	probe := func(p *v1.Probe) string {
		if p == nil || p.HTTPGet == nil {
			return "none"
		}
		return fmt.Sprintf("%s :%s %s", p.HTTPGet.Scheme, p.HTTPGet.Port.String(), p.HTTPGet.Path)
	}
	mounts := map[string]v1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	volumeOf := func(kind, name string) string {
		for _, v := range pod.Volumes {
			if kind == "ConfigMap" && v.ConfigMap != nil && v.ConfigMap.Name == name ||
				kind == "Secret" && v.Secret != nil && v.Secret.SecretName == name {
				m, ok := mounts[v.Name]
				if !ok || m.SubPath != "" || !m.ReadOnly {
					return "not mounted read-only as a directory"
				}
				return m.MountPath
			}
		}
		return "no volume"
	}
	cloudConfig := args["--cloud-config"]

	for _, tc := range []struct {
		what      string
		got, want any
	}{
		{"namespace", ds.Namespace, namespace},
		{"image", c.Image, image},
		{"command (the image's ENTRYPOINT runs)", len(c.Command), 0},
		{"serviceAccountName", pod.ServiceAccountName, serviceAccount},
		{"priorityClassName", pod.PriorityClassName, "system-cluster-critical"},
		{"hostNetwork", pod.HostNetwork, true},
		{"dnsPolicy", pod.DNSPolicy, v1.DNSClusterFirstWithHostNet},
		{"nodeSelector", pod.NodeSelector, map[string]string{"node-role.kubernetes.io/control-plane": ""}},
		{"tolerates uninitialized", tolerated["node.cloudprovider.kubernetes.io/uninitialized:NoSchedule"], true},
		{"tolerates control-plane", tolerated["node-role.kubernetes.io/control-plane:NoSchedule"], true},
		{"tolerates not-ready", tolerated["node.kubernetes.io/not-ready:NoSchedule"], true},
		{"--cloud-provider", args["--cloud-provider"], "baremetal"},
		{"--cloud-config", cloudConfig, "/etc/baremetal-ccm/cloud.yaml"},
		{"--leader-elect", args["--leader-elect"], "true"},
		{"--use-service-account-credentials", args["--use-service-account-credentials"], "false"},
		{"--bind-address", args["--bind-address"], "$(NODE_IP)"},
		{"--secure-port", args["--secure-port"], "10258"},
		{"NODE_IP", env["NODE_IP"], "fieldRef:status.hostIP"},
		{"NODE_NAME", env["NODE_NAME"], "fieldRef:spec.nodeName"},
		{"liveness probe", probe(c.LivenessProbe), "HTTPS :10258 /healthz"},
		{"--readiness-bind-address", args["--readiness-bind-address"], "$(NODE_IP)"},
		{"--readiness-port", args["--readiness-port"], "10263"},
		{"readiness probe", probe(c.ReadinessProbe), "HTTP :10263 /readyz"},
		{"requests and limits", len(c.Resources.Requests) == 2 && len(c.Resources.Limits) == 2, true},
		{"runAsNonRoot", psc.RunAsNonRoot != nil && *psc.RunAsNonRoot, true},
		{"runAsUser", fmt.Sprint(deref(psc.RunAsUser)), "65532"},
		{"seccompProfile", psc.SeccompProfile != nil && psc.SeccompProfile.Type == v1.SeccompProfileTypeRuntimeDefault, true},
		{"readOnlyRootFilesystem", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, true},
		{"allowPrivilegeEscalation", sc.AllowPrivilegeEscalation != nil && *sc.AllowPrivilegeEscalation, false},
		{"capabilities", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []v1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0, true},
		{"privileged", sc.Privileged == nil || !*sc.Privileged, true},
		{"cloud config mount", volumeOf("ConfigMap", configMapName), path.Dir(cloudConfig)},
		{"password mount", volumeOf("Secret", secretName), "/etc/baremetal-ccm-bgp"},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("DaemonSet %s: got %v, want %v", tc.what, tc.got, tc.want)
		}
	}

	var cm v1.ConfigMap
	convert(t, find(t, objs, "ConfigMap", configMapName), &cm)
	if _, ok := cm.Data[path.Base(cloudConfig)]; !ok {
		t.Errorf("ConfigMap %s has no key %q, the file --cloud-config names", configMapName, path.Base(cloudConfig))
	}
	find(t, objs, "Secret", secretName)
	find(t, objs, "ServiceAccount", serviceAccount)
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
