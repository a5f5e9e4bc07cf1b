package service

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
)

func TestStatusAddrs(t *testing.T) {
	tests := []struct {
		name   string
		status []string
		want   []netip.Addr
	}{
		{"none", nil, nil},
		{"one", []string{"192.0.2.1"}, addrs("192.0.2.1")},
		{"dual-stack, in status order", []string{"2001:db8::1", "192.0.2.1"}, addrs("2001:db8::1", "192.0.2.1")},
		// ::ffff:192.0.2.1 is 192.0.2.1: one rule for every reader.
		{"a 4-in-6 address is the IPv4 address it maps", []string{"::ffff:192.0.2.1"}, addrs("192.0.2.1")},
		{"repeats once, mapped or not", []string{"192.0.2.1", "::ffff:192.0.2.1", "192.0.2.1"}, addrs("192.0.2.1")},
		{"a hostname entry is skipped", []string{"", "192.0.2.1"}, addrs("192.0.2.1")},
		{"not an address", []string{"lb.example", "192.0.2.300"}, nil},
		{"a zone is skipped", []string{"2001:db8::1%eth0", "2001:db8::2"}, addrs("2001:db8::2")},
		{"spaces are trimmed", []string{" 192.0.2.1 "}, addrs("192.0.2.1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := StatusAddrs(makeService("a", withStatus(tt.status...)))
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("StatusAddrs(%q) differs (-want +got):\n%s", tt.status, diff)
			}
		})
	}
}

// A status anyone may write is read once per entry: a long one costs what
// its length does, and repeats come out once.
func TestStatusAddrsLong(t *testing.T) {
	svc := makeService("a")
	for i := range 100_000 {
		ip := "192.0.2.1"
		if i%2 == 1 {
			ip = "2001:db8::" + strings.Repeat("1", 1+i%4)
		}
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
	}
	want := addrs("192.0.2.1", "2001:db8::11", "2001:db8::1111")
	if got := StatusAddrs(svc); !cmp.Equal(got, want, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })) {
		t.Errorf("StatusAddrs() = %v, want %v", got, want)
	}
}
