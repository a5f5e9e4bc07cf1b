package provider

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

const routesConfig = `
region: lab
racks:
- name: rack-a
  subnets: [198.51.100.0/25, 2001:db8:1::/64]
- name: rack-b
  subnets: [198.51.100.128/25, 2001:db8:2::/64]
- name: rack-c
  subnets: [192.0.2.0/24]
pools:
- name: public
  addresses: [203.0.113.0/26]
bgp:
  asn: 64512
  peers:
  - {name: tor-a, address: 198.51.100.1, asn: 65001, rack: rack-a}
  - {name: tor-b, address: 198.51.100.129, asn: 65002, rack: rack-b}
routes:
  clusterCIDRs: [203.0.113.128/25, 2001:db8:100::/56]
`

func routesTestConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(routesConfig + extra))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// podNode is a Node created age seconds after the first, with addresses
// and pod CIDRs.
func podNode(name string, age int, addrs []string, cidrs ...string) *v1.Node {
	n := node(name, addrs)
	n.CreationTimestamp = metav1.NewTime(time.Unix(1_700_000_000+int64(age), 0))
	n.Spec.PodCIDRs = cidrs
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	return n
}

// routeStrings renders routes as "prefix node next-hop rack [all]".
func routeStrings(routes []bgp.Route) []string {
	var out []string
	for _, r := range routes {
		s := fmt.Sprintf("%s %s %s %s", r.Prefix, r.Node, r.NextHop, r.Rack)
		if r.AllRouters {
			s += " all"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func TestDesiredRoutes(t *testing.T) {
	a1 := podNode("a1", 0, []string{"198.51.100.11", "2001:db8:1::11"}, "203.0.113.128/28", "2001:db8:100::/64")
	b1 := podNode("b1", 1, []string{"198.51.100.140", "2001:db8:2::40"}, "203.0.113.144/28", "2001:db8:100:1::/64")
	vips := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/26"), netip.MustParsePrefix("203.0.113.240/28")}
	for _, tc := range []struct {
		name     string
		extra    string // appended to routesConfig
		nodes    []*v1.Node
		want     []string
		problems map[string][]string // "node cidr" -> substrings of the message
	}{
		{
			name:  "dual-stack nodes in two racks",
			nodes: []*v1.Node{a1, b1, podNode("new", 5, []string{"198.51.100.12"})},
			want: []string{
				"2001:db8:100:1::/64 b1 2001:db8:2::40 rack-b", "2001:db8:100::/64 a1 2001:db8:1::11 rack-a",
				"203.0.113.128/28 a1 198.51.100.11 rack-a", "203.0.113.144/28 b1 198.51.100.140 rack-b",
			},
		},
		{
			name:  "announceTo all",
			extra: "  announceTo: all\n",
			nodes: []*v1.Node{a1},
			want:  []string{"2001:db8:100::/64 a1 2001:db8:1::11 rack-a all", "203.0.113.128/28 a1 198.51.100.11 rack-a all"},
		},
		{
			name:     "no address of the family: the other family is routed",
			nodes:    []*v1.Node{podNode("v4only", 0, []string{"198.51.100.11"}, "203.0.113.128/28", "2001:db8:100::/64")},
			want:     []string{"203.0.113.128/28 v4only 198.51.100.11 rack-a"},
			problems: map[string][]string{"v4only 2001:db8:100::/64": {"no IPv6 address", "2001:db8:100::/64"}},
		},
		{
			name: "hostile pod CIDRs stay with their Node",
			nodes: []*v1.Node{
				a1,
				podNode("default", 1, []string{"198.51.100.12"}, "0.0.0.0/0"),
				podNode("outside", 2, []string{"198.51.100.13"}, "198.51.100.0/24"),
				podNode("pool", 3, []string{"198.51.100.14"}, "203.0.113.0/28"),
				podNode("history", 4, []string{"198.51.100.15"}, "203.0.113.240/29"),
				podNode("garbage", 5, []string{"198.51.100.16"}, "not-a-cidr"),
				podNode("hostbits", 6, []string{"198.51.100.17"}, "203.0.113.161/28"),
				podNode("mapped", 7, []string{"198.51.100.18"}, "::ffff:203.0.113.176/124"),
				podNode("twice", 8, []string{"198.51.100.19"}, "203.0.113.192/28", "203.0.113.208/28"),
				podNode("three", 9, []string{"198.51.100.20", "2001:db8:1::20"}, "203.0.113.224/29", "2001:db8:100:9::/64", "2001:db8:100:a::/64"),
			},
			want: []string{
				"2001:db8:100:9::/64 three 2001:db8:1::20 rack-a", "2001:db8:100::/64 a1 2001:db8:1::11 rack-a",
				"203.0.113.128/28 a1 198.51.100.11 rack-a", "203.0.113.192/28 twice 198.51.100.19 rack-a",
				"203.0.113.224/29 three 198.51.100.20 rack-a",
			},
			problems: map[string][]string{
				"default 0.0.0.0/0":               {"outside the cluster CIDRs", "203.0.113.128/25, 2001:db8:100::/56"},
				"outside 198.51.100.0/24":         {"outside the cluster CIDRs"},
				"pool 203.0.113.0/28":             {"outside the cluster CIDRs"},
				"history 203.0.113.240/29":        {"overlaps 203.0.113.240/28", "VIPs"},
				"garbage not-a-cidr":              {`"not-a-cidr" is not a CIDR`},
				"hostbits 203.0.113.161/28":       {"host bits", "203.0.113.160/28"},
				"mapped ::ffff:203.0.113.176/124": {"not a plain IPv4 or IPv6 network"},
				"twice 203.0.113.208/28":          {"pod CIDR of this family already (203.0.113.192/28)"},
				"three 2001:db8:100:a::/64":       {"more than 2 pod CIDRs"},
			},
		},
		{
			name: "overlapping pod CIDRs: the older Node keeps its own",
			nodes: []*v1.Node{
				podNode("old", 0, []string{"198.51.100.11"}, "203.0.113.144/28"),
				podNode("greedy", 1, []string{"198.51.100.12"}, "203.0.113.128/26"),
				podNode("same", 2, []string{"198.51.100.13"}, "203.0.113.144/28"),
				podNode("inside", 3, []string{"198.51.100.14"}, "203.0.113.144/30"),
				podNode("neighbour", 4, []string{"198.51.100.15"}, "203.0.113.160/28"),
			},
			want: []string{"203.0.113.144/28 old 198.51.100.11 rack-a", "203.0.113.160/28 neighbour 198.51.100.15 rack-a"},
			problems: map[string][]string{
				"greedy 203.0.113.128/26": {"overlaps pod CIDR 203.0.113.144/28 of the older Node old"},
				"same 203.0.113.144/28":   {"of the older Node old"},
				"inside 203.0.113.144/30": {"of the older Node old"},
			},
		},
		{
			name: "a newer Node claiming an older one's address gets no route there",
			nodes: []*v1.Node{
				podNode("owner", 0, []string{"198.51.100.11"}, "203.0.113.128/28"),
				podNode("rogue", 1, []string{"198.51.100.11", "2001:db8:1::99"}, "203.0.113.144/28", "2001:db8:100:1::/64"),
			},
			want:     []string{"2001:db8:100:1::/64 rogue 2001:db8:1::99 rack-a", "203.0.113.128/28 owner 198.51.100.11 rack-a"},
			problems: map[string][]string{"rogue 203.0.113.144/28": {"no IPv4 address of its own"}},
		},
		{
			name: "no router would get it",
			nodes: []*v1.Node{
				podNode("rackless", 0, []string{"198.18.0.1"}, "203.0.113.128/28"),
				podNode("lonely", 1, []string{"192.0.2.10"}, "203.0.113.144/28"),
			},
			problems: map[string][]string{
				"rackless 203.0.113.128/28": {"in no rack", "announceTo: all"},
				"lonely 203.0.113.144/28":   {`no BGP peer is in the Node's rack "rack-c"`},
			},
		},
		{
			name:  "no router would get it, but every router gets everything",
			extra: "  announceTo: all\n",
			nodes: []*v1.Node{podNode("rackless", 0, []string{"198.18.0.1"}, "203.0.113.128/28")},
			want:  []string{"203.0.113.128/28 rackless 198.18.0.1  all"},
		},
		{
			name: "the older spec.podCIDR alone",
			nodes: []*v1.Node{func() *v1.Node {
				n := podNode("old-style", 0, []string{"198.51.100.11"})
				n.Spec.PodCIDR = "203.0.113.128/28"
				return n
			}()},
			want: []string{"203.0.113.128/28 old-style 198.51.100.11 rack-a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			routes, problems := desiredRoutes(tc.nodes, routesTestConfig(t, tc.extra), vips)
			if diff := cmp.Diff(tc.want, routeStrings(routes)); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			got := map[string]string{}
			for _, p := range problems {
				got[p.key.node+" "+p.key.cidr] = p.msg
			}
			if len(got) != len(tc.problems) {
				t.Errorf("problems %v, want %d", got, len(tc.problems))
			}
			for k, says := range tc.problems {
				for _, s := range says {
					if !strings.Contains(got[k], s) {
						t.Errorf("problem of %s = %q, want it to contain %q", k, got[k], s)
					}
				}
			}
		})
	}
}

// TestOverlappingPairs checks the sweep against comparing every pair.
func TestOverlappingPairs(t *testing.T) {
	var routes []bgp.Route
	for _, s := range []string{"203.0.113.0/24", "203.0.113.0/25", "203.0.113.0/26", "203.0.113.64/26", "203.0.113.128/25",
		"203.0.113.128/28", "203.0.113.144/28", "198.51.100.0/24", "2001:db8::/32", "2001:db8:1::/48", "2001:db8::/32"} {
		routes = append(routes, bgp.Route{Prefix: netip.MustParsePrefix(s)})
	}
	var want []string
	for i := range routes {
		for j := i + 1; j < len(routes); j++ {
			if routes[i].Prefix.Overlaps(routes[j].Prefix) {
				want = append(want, fmt.Sprint(min(i, j), max(i, j)))
			}
		}
	}
	var got []string
	for _, p := range overlappingPairs(routes) {
		got = append(got, fmt.Sprint(min(p[0], p[1]), max(p[0], p[1])))
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("overlappingPairs (-want +got):\n%s", diff)
	}
}
