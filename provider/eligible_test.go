package provider

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

func createdAt(minute int) nodeOpt {
	return func(n *v1.Node) {
		n.CreationTimestamp = metav1.NewTime(time.Date(2026, 1, 1, 0, minute, 0, 0, time.UTC))
	}
}

// TestCandidatesDuplicateAddress: a Node that claims another Node's
// address loses that address, not the older Node, and nothing else
// changes.
func TestCandidatesDuplicateAddress(t *testing.T) {
	cfg, err := config.Parse([]byte(announcerConfig))
	if err != nil {
		t.Fatal(err)
	}
	type hops map[string][]string // node -> addresses kept
	for _, tc := range []struct {
		name     string
		nodes    []*v1.Node
		want     hops
		wantDups []duplicateAddress
	}{
		{
			name:  "distinct addresses",
			nodes: []*v1.Node{node("a1", []string{"198.51.100.11"}, createdAt(1)), node("a2", []string{"198.51.100.12"}, createdAt(2))},
			want:  hops{"a1": {"198.51.100.11"}, "a2": {"198.51.100.12"}},
		},
		{
			name: "a newer node claims an older one's address: the older keeps it",
			nodes: []*v1.Node{
				node("rogue", []string{"198.51.100.11"}, createdAt(5)),
				node("a1", []string{"198.51.100.11", "2001:db8:1::11"}, createdAt(1)),
			},
			want:     hops{"a1": {"198.51.100.11", "2001:db8:1::11"}, "rogue": {}},
			wantDups: []duplicateAddress{{addr: netip.MustParseAddr("198.51.100.11"), newer: "rogue", older: "a1"}},
		},
		{
			name: "only the shared family is lost",
			nodes: []*v1.Node{
				node("a1", []string{"198.51.100.11"}, createdAt(1)),
				node("a2", []string{"198.51.100.11", "2001:db8:1::12"}, createdAt(2)),
			},
			want:     hops{"a1": {"198.51.100.11"}, "a2": {"2001:db8:1::12"}},
			wantDups: []duplicateAddress{{addr: netip.MustParseAddr("198.51.100.11"), newer: "a2", older: "a1"}},
		},
		{
			name: "the owner being NotReady does not free its address",
			nodes: []*v1.Node{
				node("a1", []string{"198.51.100.11"}, createdAt(1), notReady),
				node("rogue", []string{"198.51.100.11"}, createdAt(2)),
			},
			want:     hops{"rogue": {}},
			wantDups: []duplicateAddress{{addr: netip.MustParseAddr("198.51.100.11"), newer: "rogue", older: "a1"}},
		},
		{
			name: "same creation time: the name decides",
			nodes: []*v1.Node{
				node("b", []string{"198.51.100.11"}, createdAt(1)),
				node("a", []string{"198.51.100.11"}, createdAt(1)),
			},
			want:     hops{"a": {"198.51.100.11"}, "b": {}},
			wantDups: []duplicateAddress{{addr: netip.MustParseAddr("198.51.100.11"), newer: "b", older: "a"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, dups := candidates(tc.nodes, cfg)
			gotHops := hops{}
			for _, c := range got {
				gotHops[c.name] = []string{}
				for _, a := range c.addrs {
					gotHops[c.name] = append(gotHops[c.name], a.String())
				}
			}
			if diff := cmp.Diff(tc.want, gotHops); diff != "" {
				t.Errorf("candidates (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantDups, dups, cmp.AllowUnexported(duplicateAddress{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("duplicates (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCandidateAddresses: only unicast addresses become next hops; a Node lying about its address loses that address,
// not the other Nodes their paths.
func TestCandidateAddresses(t *testing.T) {
	cfg, err := config.Parse([]byte(announcerConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addrs []string
		want  []string
	}{
		{[]string{"198.51.100.11", "2001:db8:1::11"}, []string{"198.51.100.11", "2001:db8:1::11"}},
		{[]string{"0.0.0.0", "198.51.100.11"}, []string{"198.51.100.11"}},
		{[]string{"fe80::1", "169.254.0.1", "224.0.0.1", "ff02::1", "::", "255.255.255.255"}, nil},
		{[]string{"127.0.0.11", "::1"}, []string{"127.0.0.11", "::1"}}, // the tests' nodes
		{[]string{"::ffff:198.51.100.11"}, []string{"198.51.100.11"}},
		{[]string{"198.51.100.11", "198.51.100.11"}, []string{"198.51.100.11"}},
		{[]string{"not-an-address"}, nil},
	} {
		c := newCandidate(node("n", tc.addrs), cfg)
		var got []string
		for _, a := range c.addrs {
			got = append(got, a.String())
		}
		if !cmp.Equal(got, tc.want) {
			t.Errorf("newCandidate(%v).addrs = %v, want %v", tc.addrs, got, tc.want)
		}
	}
}
