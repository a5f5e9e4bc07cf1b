package deploy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// permission is one grant the CCM's ServiceAccount holds.
type permission struct {
	// role grants it: "ClusterRole/NAME" or "Role/NAMESPACE/NAME".
	role            string
	group, resource string
	// resourceNames limits the grant to these objects; empty: all.
	resourceNames []string
	verbs         string
}

const (
	ourClusterRole = "ClusterRole/baremetal-cloud-controller-manager"
	ourRole        = "Role/kube-system/baremetal-cloud-controller-manager"
	// authReader is the apiserver's bootstrap Role for reading the
	// extension-apiserver-authentication ConfigMap; the manifests bind it.
	authReader = "Role/kube-system/extension-apiserver-authentication-reader"
)

// allowed is the documented list of everything the manifests grant the CCM
// (docs/reference/manifests.md explains each). The manifests may grant nothing else: a new
// permission is added here, with its reason in docs/reference/manifests.md, after the
// binary was seen to need it (TestCCMAsServiceAccount: "forbidden" in its log).
var allowed = []permission{
	// Node controller: initialise Nodes; node lifecycle controller: shutdown
	// taint, delete the Node of a machine gone from the inventory;
	// announcer: eligible Nodes.
	{role: ourClusterRole, group: "", resource: "nodes", verbs: "get list watch update patch delete"},
	{role: ourClusterRole, group: "", resource: "nodes/status", verbs: "patch"},
	// Service controller and announcer: informers; restore: list.
	{role: ourClusterRole, group: "", resource: "services", verbs: "list watch"},
	// Service controller: status and finalizer, both by a status patch.
	{role: ourClusterRole, group: "", resource: "services/status", verbs: "patch"},
	// Announcer: ready endpoints for externalTrafficPolicy: Local.
	{role: ourClusterRole, group: "discovery.k8s.io", resource: "endpointslices", verbs: "list watch"},
	// Events of every controller (core/v1; patch counts a repeat).
	{role: ourClusterRole, group: "", resource: "events", verbs: "create patch"},
	// Secure port: delegated authentication and authorization.
	{role: ourClusterRole, group: "authentication.k8s.io", resource: "tokenreviews", verbs: "create"},
	{role: ourClusterRole, group: "authorization.k8s.io", resource: "subjectaccessreviews", verbs: "create"},
	// Leader election.
	{role: ourRole, group: "coordination.k8s.io", resource: "leases", verbs: "create"},
	{role: ourRole, group: "coordination.k8s.io", resource: "leases", resourceNames: []string{"cloud-controller-manager"}, verbs: "get update"},
	// Secure port: the client CA and request-header settings.
	{role: authReader, group: "", resource: "configmaps", resourceNames: []string{"extension-apiserver-authentication"}, verbs: "get list watch"},
}

// bootstrapRoles are roles the apiserver creates that the manifests may bind.
var bootstrapRoles = []string{authReader}

// grant is one verb on one resource (or one named object), in one scope:
// "" for the whole cluster, or a namespace.
type grant struct {
	scope, group, resource, name, verb string
}

func (g grant) String() string {
	s := g.verb + " " + g.resource
	if g.group != "" {
		s += "." + g.group
	}
	if g.name != "" {
		s += "/" + g.name
	}
	if g.scope != "" {
		s += " in namespace " + g.scope
	}
	return s
}

func scopeOf(role string) string {
	if parts := strings.Split(role, "/"); parts[0] == "Role" {
		return parts[1]
	}
	return ""
}

// expand turns permissions into single grants.
func expand(perms []permission) map[grant]string {
	out := map[grant]string{}
	for _, p := range perms {
		names := p.resourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, v := range strings.Fields(p.verbs) {
			for _, n := range names {
				out[grant{scopeOf(p.role), p.group, p.resource, n, v}] = p.role
			}
		}
	}
	return out
}

// rulesGrants expands RBAC rules; it reports what a grant list cannot hold
// (wildcards, non-resource URLs).
func rulesGrants(role, scope string, rules []rbacv1.PolicyRule) (map[grant]string, []string) {
	out := map[grant]string{}
	var problems []string
	for i, r := range rules {
		for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames, r.NonResourceURLs} {
			for _, v := range field {
				if strings.Contains(v, "*") {
					problems = append(problems, fmt.Sprintf("%s rule %d has a wildcard %q: name every group, resource and verb", role, i, v))
				}
			}
		}
		if len(r.NonResourceURLs) > 0 {
			problems = append(problems, fmt.Sprintf("%s rule %d grants non-resource URLs %v: the CCM requests none", role, i, r.NonResourceURLs))
		}
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						out[grant{scope, g, res, n, v}] = role
					}
				}
			}
		}
	}
	return out, problems
}

// TestRBACAllowList fails when the manifests' roles grant anything that is
// not in the documented list, use a wildcard, bind a role the manifests do
// not define (other than the listed bootstrap role), or bind to anyone but
// the CCM's ServiceAccount; and when the list names a grant the manifests no
// longer give (the list is documentation and must stay true).
func TestRBACAllowList(t *testing.T) {
	objs := render(t, repoPath(t, "manifests"))

	granted := map[grant]string{}
	defined := map[string]bool{}
	var problems []string
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole", "Role":
			var r rbacv1.ClusterRole // a Role has the same fields
			convert(t, o, &r)
			id := o.GetKind() + "/" + o.GetName()
			scope := ""
			if o.GetKind() == "Role" {
				id = "Role/" + o.GetNamespace() + "/" + o.GetName()
				scope = o.GetNamespace()
			}
			if r.AggregationRule != nil {
				problems = append(problems, id+" aggregates other roles: its grants would not be the listed ones")
			}
			defined[id] = true
			g, p := rulesGrants(id, scope, r.Rules)
			problems = append(problems, p...)
			for k, v := range g {
				granted[k] = v
			}
		}
	}
	for _, p := range allowed {
		if !defined[p.role] && !slices.Contains(bootstrapRoles, p.role) {
			problems = append(problems, fmt.Sprintf("the allow-list names %s, which the manifests do not define", p.role))
		}
	}

	// Bindings: only to the CCM's ServiceAccount, only of our roles or the
	// listed bootstrap ones.
	bound := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() != "ClusterRoleBinding" && o.GetKind() != "RoleBinding" {
			continue
		}
		var b rbacv1.RoleBinding
		convert(t, o, &b)
		id := o.GetKind() + "/" + o.GetName()
		if o.GetNamespace() != "" {
			id = o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
		}
		ref := b.RoleRef.Kind + "/" + b.RoleRef.Name
		if b.RoleRef.Kind == "Role" {
			ref = "Role/" + o.GetNamespace() + "/" + b.RoleRef.Name
		}
		if o.GetKind() == "ClusterRoleBinding" && b.RoleRef.Kind != "ClusterRole" {
			problems = append(problems, fmt.Sprintf("%s: roleRef kind %q", id, b.RoleRef.Kind))
		}
		if !defined[ref] && !slices.Contains(bootstrapRoles, ref) {
			problems = append(problems, fmt.Sprintf("%s binds %s: want one of the manifests' roles or %v", id, ref, bootstrapRoles))
		}
		bound[ref] = true
		want := rbacv1.Subject{Kind: "ServiceAccount", Name: serviceAccount, Namespace: namespace}
		if len(b.Subjects) != 1 || b.Subjects[0] != want {
			problems = append(problems, fmt.Sprintf("%s: subjects %+v, want only %+v", id, b.Subjects, want))
		}
	}
	for _, r := range bootstrapRoles {
		if !bound[r] {
			problems = append(problems, fmt.Sprintf("the allow-list names the bootstrap role %s, but no binding in the manifests binds it", r))
		}
	}
	for r := range defined {
		if !bound[r] {
			problems = append(problems, fmt.Sprintf("%s is bound to nobody", r))
		}
	}

	want := expand(allowed)
	for g, role := range granted {
		if _, ok := want[g]; !ok {
			problems = append(problems, fmt.Sprintf("%s grants %q, which is not in the allow-list (test/deploy/rbac_test.go, docs/reference/manifests.md)", role, g))
		}
	}
	for g, role := range want {
		if slices.Contains(bootstrapRoles, role) {
			continue // granted by the apiserver's own role; checked on the real apiserver
		}
		if granted[g] != role {
			problems = append(problems, fmt.Sprintf("the allow-list says %s grants %q, but it does not: update the list and docs/reference/manifests.md", role, g))
		}
	}
	slices.Sort(problems)
	for _, p := range problems {
		t.Error(p)
	}
}
