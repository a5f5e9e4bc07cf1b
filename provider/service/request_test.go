package service

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/baremetal-ccm/baremetal-ccm/ipam"
)

// Test addresses come from the documentation ranges only.

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

type svcOpt func(*v1.Service)

// makeService returns a LoadBalancer Service as the API server would store
// it on an IPv4 cluster: SingleStack IPv4, one TCP port.
func makeService(name string, opts ...svcOpt) *v1.Service {
	single := v1.IPFamilyPolicySingleStack
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: metav1.NewTime(epoch)},
		Spec: v1.ServiceSpec{
			Type:           v1.ServiceTypeLoadBalancer,
			IPFamilies:     []v1.IPFamily{v1.IPv4Protocol},
			IPFamilyPolicy: &single,
			Ports:          []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func annotate(key, value string) svcOpt {
	return func(s *v1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[key] = value
	}
}

func withFamilies(policy v1.IPFamilyPolicy, fams ...v1.IPFamily) svcOpt {
	return func(s *v1.Service) {
		s.Spec.IPFamilyPolicy = nil
		if policy != "" {
			s.Spec.IPFamilyPolicy = &policy
		}
		s.Spec.IPFamilies = fams
	}
}

func withStatus(ips ...string) svcOpt {
	return func(s *v1.Service) {
		s.Status.LoadBalancer.Ingress = nil
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
		}
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// base is the request of makeService(name) with no option.
func base(name string) ipam.Request {
	return ipam.Request{
		Namespace: "ns", Name: name,
		Policy:   ipam.SingleStack,
		Families: []ipam.Family{ipam.IPv4},
		Ports:    []ipam.Port{{Number: 80, Protocol: "TCP"}},
		Source:   ipam.Source{Pool: "annotation " + AnnotationPool, SharingKey: "annotation " + AnnotationAllowSharedIP},
	}
}

func TestAllocationRequest(t *testing.T) {
	tests := []struct {
		name string
		svc  *v1.Service
		want func(*ipam.Request)
	}{{
		name: "defaults",
		svc:  makeService("a"),
		want: func(*ipam.Request) {},
	}, {
		name: "families and policy",
		svc:  makeService("a", withFamilies(v1.IPFamilyPolicyRequireDualStack, v1.IPv6Protocol, v1.IPv4Protocol)),
		want: func(r *ipam.Request) {
			r.Policy, r.Families = ipam.RequireDualStack, []ipam.Family{ipam.IPv6, ipam.IPv4}
		},
	}, {
		name: "no policy, no families",
		svc:  makeService("a", withFamilies("")),
		want: func(r *ipam.Request) { r.Families = nil },
	}, {
		name: "PreferDualStack",
		svc:  makeService("a", withFamilies(v1.IPFamilyPolicyPreferDualStack, v1.IPv4Protocol)),
		want: func(r *ipam.Request) { r.Policy = ipam.PreferDualStack },
	}, {
		name: "the annotation's addresses, trimmed",
		svc:  makeService("a", annotate(AnnotationLoadBalancerIPs, " 192.0.2.9 , 2001:db8::9 ")),
		want: func(r *ipam.Request) {
			r.IPs, r.Source.IPs = addrs("192.0.2.9", "2001:db8::9"), "annotation "+AnnotationLoadBalancerIPs
		},
	}, {
		name: "deprecated spec.loadBalancerIP",
		svc:  makeService("a", func(s *v1.Service) { s.Spec.LoadBalancerIP = "192.0.2.7" }),
		want: func(r *ipam.Request) { r.IPs, r.Source.IPs = addrs("192.0.2.7"), "spec.loadBalancerIP" },
	}, {
		name: "the annotation wins over spec.loadBalancerIP",
		svc: makeService("a", func(s *v1.Service) { s.Spec.LoadBalancerIP = "192.0.2.7" },
			annotate(AnnotationLoadBalancerIPs, "192.0.2.8")),
		want: func(r *ipam.Request) {
			r.IPs, r.Source.IPs = addrs("192.0.2.8"), "annotation "+AnnotationLoadBalancerIPs
		},
	}, {
		name: "an empty annotation counts as absent",
		svc:  makeService("a", annotate(AnnotationLoadBalancerIPs, " "), annotate(AnnotationPool, ""), annotate(AnnotationAllowSharedIP, "")),
		want: func(*ipam.Request) {},
	}, {
		name: "pool and sharing key, trimmed",
		svc:  makeService("a", annotate(AnnotationPool, " pub "), annotate(AnnotationAllowSharedIP, " dns ")),
		want: func(r *ipam.Request) { r.Pool, r.SharingKey = "pub", "dns" },
	}, {
		name: "ports: no protocol is TCP",
		svc: makeService("a", func(s *v1.Service) {
			s.Spec.Ports = []v1.ServicePort{{Port: 53, Protocol: v1.ProtocolUDP}, {Port: 53}}
		}),
		want: func(r *ipam.Request) {
			r.Ports = []ipam.Port{{Number: 53, Protocol: "UDP"}, {Number: 53, Protocol: "TCP"}}
		},
	}, {
		name: "Local: the pod selector matters",
		svc: makeService("a", func(s *v1.Service) {
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.Selector = map[string]string{"app": "web"}
		}),
		want: func(r *ipam.Request) { r.TrafficPolicyLocal, r.PodSelector = true, map[string]string{"app": "web"} },
	}, {
		name: "Cluster: the pod selector does not",
		svc:  makeService("a", func(s *v1.Service) { s.Spec.Selector = map[string]string{"app": "web"} }),
		want: func(*ipam.Request) {},
	}, {
		name: "labels and status",
		svc:  makeService("a", func(s *v1.Service) { s.Labels = map[string]string{"tier": "edge"} }, withStatus("192.0.2.1")),
		want: func(r *ipam.Request) { r.Labels, r.Shown = map[string]string{"tier": "edge"}, addrs("192.0.2.1") },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := base(tt.svc.Name)
			tt.want(&want)
			got, err := AllocationRequest(tt.svc)
			if err != nil {
				t.Fatalf("AllocationRequest() = %v", err)
			}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("AllocationRequest() differs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAllocationRequestErrors(t *testing.T) {
	tests := []struct {
		name    string
		svc     *v1.Service
		wantMsg []string // substrings: the field, the value, the Service
	}{{
		name:    "bad ipFamilyPolicy",
		svc:     makeService("a", withFamilies("Sometimes", v1.IPv4Protocol)),
		wantMsg: []string{"spec.ipFamilyPolicy", "Sometimes", "ns/a"},
	}, {
		name:    "repeated ipFamilies",
		svc:     makeService("a", withFamilies(v1.IPFamilyPolicyPreferDualStack, v1.IPv4Protocol, v1.IPv4Protocol)),
		wantMsg: []string{"spec.ipFamilies", "ns/a"},
	}, {
		name:    "unknown ipFamily",
		svc:     makeService("a", withFamilies(v1.IPFamilyPolicyPreferDualStack, "IPv5")),
		wantMsg: []string{"spec.ipFamilies", "IPv5"},
	}, {
		name:    "three ipFamilies",
		svc:     makeService("a", withFamilies(v1.IPFamilyPolicyPreferDualStack, v1.IPv4Protocol, v1.IPv6Protocol, v1.IPv4Protocol)),
		wantMsg: []string{"spec.ipFamilies"},
	}, {
		name:    "not an address",
		svc:     makeService("a", annotate(AnnotationLoadBalancerIPs, "192.0.2.300")),
		wantMsg: []string{AnnotationLoadBalancerIPs, `"192.0.2.300"`, "ns/a"},
	}, {
		name:    "an empty entry",
		svc:     makeService("a", annotate(AnnotationLoadBalancerIPs, "192.0.2.3,")),
		wantMsg: []string{AnnotationLoadBalancerIPs, `""`},
	}, {
		name:    "a list in spec.loadBalancerIP",
		svc:     makeService("a", func(s *v1.Service) { s.Spec.LoadBalancerIP = "192.0.2.1,192.0.2.2" }),
		wantMsg: []string{"spec.loadBalancerIP", AnnotationLoadBalancerIPs},
	}, {
		name:    "a mapped address",
		svc:     makeService("a", annotate(AnnotationLoadBalancerIPs, "::ffff:192.0.2.1")),
		wantMsg: []string{"::ffff:192.0.2.1", "plain"},
	}, {
		name:    "an address with a zone",
		svc:     makeService("a", annotate(AnnotationLoadBalancerIPs, "2001:db8::1%eth0")),
		wantMsg: []string{"2001:db8::1%eth0", "plain"},
	}, {
		name:    "three addresses are refused before they are read",
		svc:     makeService("a", annotate(AnnotationLoadBalancerIPs, "192.0.2.1,2001:db8::1,nonsense")),
		wantMsg: []string{AnnotationLoadBalancerIPs, "3 addresses"},
	}, {
		name:    "a huge list",
		svc:     makeService("a", annotate(AnnotationLoadBalancerIPs, strings.Repeat("192.0.2.1,", 100_000))),
		wantMsg: []string{"100001 addresses"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AllocationRequest(tt.svc)
			if !errors.Is(err, ipam.ErrInvalidRequest) {
				t.Fatalf("AllocationRequest() = %+v, %v; want error %v", got, err, ipam.ErrInvalidRequest)
			}
			for _, w := range tt.wantMsg {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("AllocationRequest() error %q does not say %q", err, w)
				}
			}
			claim := Claim(tt.svc)
			if !claim.Unreadable || claim.Request.Name != tt.svc.Name || !claim.Created.Equal(epoch) {
				t.Errorf("Claim() = %+v, want an unreadable claim of ns/%s created at %v", claim, tt.svc.Name, epoch)
			}
		})
	}
}

func TestClaim(t *testing.T) {
	svc := makeService("a", annotate(AnnotationAllowSharedIP, "dns"), withStatus("192.0.2.1", "2001:db8::1"))
	want, err := AllocationRequest(svc)
	if err != nil {
		t.Fatal(err)
	}
	got := Claim(svc)
	if got.Unreadable || !got.Created.Equal(epoch) {
		t.Errorf("Claim() = %+v, want a readable claim created at %v", got, epoch)
	}
	if diff := cmp.Diff(want, got.Request, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("Claim().Request differs from AllocationRequest() (-want +got):\n%s", diff)
	}

	// An unreadable Service still claims its status, with its sharing
	// terms.
	bad := makeService("b", annotate(AnnotationLoadBalancerIPs, "nonsense"), annotate(AnnotationAllowSharedIP, "dns"), withStatus("192.0.2.2"))
	c := Claim(bad)
	if !c.Unreadable || c.Request.SharingKey != "dns" || len(c.Request.Shown) != 1 || c.Request.Shown[0] != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("Claim(unreadable) = %+v, want unreadable, key dns, shown 192.0.2.2", c)
	}
}

// The errors a user sees come from the allocator for what does not hold
// together; they must still name the annotation to change.
func TestAllocationErrorsNameTheAnnotation(t *testing.T) {
	pools, errs := ipam.ParsePools([]ipam.PoolConfig{
		{Name: "pub", Addresses: []string{"192.0.2.0/28", "2001:db8::/120"}},
		{Name: "manual", Addresses: []string{"198.51.100.0/28"}},
	}, field.NewPath("pools"))
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	alloc, err := ipam.New(pools)
	if err != nil {
		t.Fatal(err)
	}
	req, err := AllocationRequest(makeService("holder", annotate(AnnotationAllowSharedIP, "dns"), annotate(AnnotationLoadBalancerIPs, "192.0.2.1")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alloc.Allocate(req); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		svc     *v1.Service
		wantErr error
		wantMsg []string
	}{{
		name:    "two addresses of one family",
		svc:     makeService("a", withFamilies(v1.IPFamilyPolicyPreferDualStack, v1.IPv4Protocol, v1.IPv6Protocol), annotate(AnnotationLoadBalancerIPs, "192.0.2.1,192.0.2.2")),
		wantErr: ipam.ErrInvalidRequest,
		wantMsg: []string{AnnotationLoadBalancerIPs, "two IPv4 addresses (192.0.2.1, 192.0.2.2)"},
	}, {
		name:    "a family the Service does not have",
		svc:     makeService("a", func(s *v1.Service) { s.Spec.LoadBalancerIP = "2001:db8::1" }),
		wantErr: ipam.ErrWrongFamily,
		wantMsg: []string{"spec.loadBalancerIP", "IPv6 address 2001:db8::1", "SingleStack"},
	}, {
		name:    "an unknown pool",
		svc:     makeService("a", annotate(AnnotationPool, "third")),
		wantErr: ipam.ErrUnknownPool,
		wantMsg: []string{"annotation " + AnnotationPool, `"third"`, "pub, manual"},
	}, {
		name:    "outside the named pool",
		svc:     makeService("a", annotate(AnnotationPool, "manual"), annotate(AnnotationLoadBalancerIPs, "192.0.2.5")),
		wantErr: ipam.ErrOutsidePools,
		wantMsg: []string{`not in pool "manual" that annotation ` + AnnotationPool + " names"},
	}, {
		name:    "an address shared under a key",
		svc:     makeService("a", annotate(AnnotationLoadBalancerIPs, "192.0.2.1")),
		wantErr: ipam.ErrAddressTaken,
		wantMsg: []string{"ns/holder", AnnotationAllowSharedIP + `="dns"`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := AllocationRequest(tt.svc)
			if err == nil {
				_, err = alloc.Allocate(req)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Allocate(AllocationRequest()) = %v, want error %v", err, tt.wantErr)
			}
			for _, w := range tt.wantMsg {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
