package lbservice

import (
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestNew(t *testing.T) {
	s := New("web", 443, SingleStack(v1.IPv6Protocol), func(s *v1.Service) { s.Annotations["k"] = "v" })
	if s.Spec.Type != v1.ServiceTypeLoadBalancer || s.Spec.Ports[0].Port != 443 || s.Spec.Selector["app"] != "web" {
		t.Errorf("New: %+v", s.Spec)
	}
	if *s.Spec.IPFamilyPolicy != v1.IPFamilyPolicySingleStack || len(s.Spec.IPFamilies) != 1 || s.Spec.IPFamilies[0] != v1.IPv6Protocol {
		t.Errorf("SingleStack(IPv6): policy %v, families %v", *s.Spec.IPFamilyPolicy, s.Spec.IPFamilies)
	}
	if s.Annotations["k"] != "v" {
		t.Errorf("mutations in order: annotations %v", s.Annotations)
	}
	d := New("dual", 80, DualStack)
	if *d.Spec.IPFamilyPolicy != v1.IPFamilyPolicyRequireDualStack || len(d.Spec.IPFamilies) != 2 {
		t.Errorf("DualStack: policy %v, families %v", *d.Spec.IPFamilyPolicy, d.Spec.IPFamilies)
	}
}

// recorder counts the errors CheckNoDuplicates reports.
type recorder struct {
	testing.TB
	errors int
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.errors++ }

func TestCheckNoDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ingress map[string]string
		want    int
	}{
		{"distinct", map[string]string{"a": "203.0.113.1", "b": "203.0.113.2"}, 0},
		{"one shared", map[string]string{"a": "203.0.113.1", "b": "203.0.113.1", "c": "203.0.113.2"}, 1},
		{"three on one", map[string]string{"a": "203.0.113.1", "b": "203.0.113.1", "c": "203.0.113.1"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			CheckNoDuplicates(r, tc.ingress)
			if r.errors != tc.want {
				t.Errorf("CheckNoDuplicates reported %d errors, want %d", r.errors, tc.want)
			}
		})
	}
}
