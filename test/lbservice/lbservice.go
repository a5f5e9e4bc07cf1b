// Package lbservice builds the LoadBalancer Services the integration, deploy,
// e2e and benchmark tests create, and checks what the CCM gave them.
package lbservice

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// New is a LoadBalancer Service in namespace default, selecting app=name,
// with one TCP port (target 8080), after each mutate has changed it.
func New(name string, port int32, mutate ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{}},
		Spec: v1.ServiceSpec{
			Type:     v1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []v1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(8080), Protocol: v1.ProtocolTCP}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// SingleStack makes a Service ask for one address, of family.
func SingleStack(family v1.IPFamily) func(*v1.Service) {
	return func(s *v1.Service) {
		p := v1.IPFamilyPolicySingleStack
		s.Spec.IPFamilyPolicy = &p
		s.Spec.IPFamilies = []v1.IPFamily{family}
	}
}

// DualStack makes a Service require an IPv4 and an IPv6 address.
func DualStack(s *v1.Service) {
	p := v1.IPFamilyPolicyRequireDualStack
	s.Spec.IPFamilyPolicy = &p
	s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
}

// CheckNoDuplicates fails the test for every address that two Services of
// ingress (Service name -> address) hold.
func CheckNoDuplicates(t testing.TB, ingress map[string]string) {
	t.Helper()
	seen := map[string]string{}
	for svc, ip := range ingress {
		if other, dup := seen[ip]; dup {
			t.Errorf("address %s held by %s and %s", ip, svc, other)
		}
		seen[ip] = svc
	}
}
