package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// routesBase is a file with racks, a machine, a pool and a peer for the
// routes: section to stay clear of.
const routesBase = `region: lab
racks:
- name: rack-a
  subnets: [198.51.100.0/26, 2001:db8:a::/64]
machines:
- name: n1
  addresses: [192.0.2.77]
pools:
- name: public
  addresses: [203.0.113.0/26, 2001:db8:100::/120]
bgp:
  asn: 64512
  peers:
  - name: tor
    address: 198.51.100.200
    asn: 64513
`

func TestParseRoutes(t *testing.T) {
	for _, tc := range []struct {
		name, section string
		want          Routes
	}{
		{"absent", "", Routes{}},
		{"dual-stack, to the rack", "routes:\n  clusterCIDRs: [203.0.113.128/25, 2001:db8:200::/56]\n",
			Routes{Enabled: true, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.128/25"), netip.MustParsePrefix("2001:db8:200::/56")}}},
		{"IPv6 only, to every router", "routes:\n  clusterCIDRs: [2001:db8:200::/56]\n  announceTo: all\n",
			Routes{Enabled: true, AllRouters: true, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("2001:db8:200::/56")}}},
		{"explicitly to the rack", "routes:\n  clusterCIDRs: [203.0.113.128/25]\n  announceTo: rack\n",
			Routes{Enabled: true, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.128/25")}}},
		{"turned off, kept written", "routes:\n  enabled: false\n  clusterCIDRs: [203.0.113.128/25]\n",
			Routes{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.128/25")}}},
		{"turned off, nothing else", "routes:\n  enabled: false\n", Routes{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(routesBase + tc.section))
			if err != nil {
				t.Fatalf("Parse() = %v", err)
			}
			if diff := cmp.Diff(tc.want, cfg.Routes, cmpopts.EquateComparable(netip.Prefix{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Routes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseRoutesBad: each bad routes: section is refused with its field
// path, the value and what is valid.
func TestParseRoutesBad(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"no cluster CIDRs", routesBase + "routes: {}\n", []string{"routes.clusterCIDRs: Required value", "--cluster-cidr"}},
		{"not a CIDR", routesBase + "routes:\n  clusterCIDRs: [203.0.113.128]\n", []string{`routes.clusterCIDRs[0]: Invalid value: "203.0.113.128"`, "must be a CIDR"}},
		{"host bits", routesBase + "routes:\n  clusterCIDRs: [203.0.113.129/25]\n", []string{`routes.clusterCIDRs[0]: Invalid value: "203.0.113.129/25"`, "203.0.113.128/25"}},
		{"a default route", routesBase + "routes:\n  clusterCIDRs: [0.0.0.0/0]\n", []string{`routes.clusterCIDRs[0]: Invalid value: "0.0.0.0/0"`, "at least /8"}},
		{"too large IPv4", routesBase + "routes:\n  clusterCIDRs: [192.0.0.0/7]\n", []string{`routes.clusterCIDRs[0]: Invalid value: "192.0.0.0/7"`, "too large"}},
		{"too large IPv6", routesBase + "routes:\n  clusterCIDRs: ['::/0']\n", []string{`routes.clusterCIDRs[0]: Invalid value: "::/0"`, "/16 for IPv6"}},
		{"two of a family", routesBase + "routes:\n  clusterCIDRs: [203.0.113.128/26, 203.0.113.192/26]\n",
			[]string{`routes.clusterCIDRs[1]: Invalid value: "203.0.113.192/26"`, "clusterCIDRs[0] is of the same family"}},
		{"three", routesBase + "routes:\n  clusterCIDRs: [203.0.113.128/26, 2001:db8:200::/56, 203.0.113.192/26]\n", []string{"routes.clusterCIDRs: Too many: 3", "at most 2"}},
		{"unknown announceTo", routesBase + "routes:\n  clusterCIDRs: [203.0.113.128/25]\n  announceTo: spine\n",
			[]string{`routes.announceTo: Unsupported value: "spine"`, `"rack"`, `"all"`}},
		{"overlapping a pool", routesBase + "routes:\n  clusterCIDRs: [203.0.113.0/24]\n", []string{`routes.clusterCIDRs[0]: Invalid value: "203.0.113.0/24"`, `pool "public"`}},
		{"inside a pool", routesBase + "routes:\n  clusterCIDRs: [2001:db8:100::/124]\n", []string{`routes.clusterCIDRs[0]: Invalid value: "2001:db8:100::/124"`, `pool "public"`}},
		{"overlapping a rack", routesBase + "routes:\n  clusterCIDRs: [2001:db8::/32]\n", []string{`routes.clusterCIDRs[0]: Invalid value: "2001:db8::/32"`, `subnet 2001:db8:a::/64 of rack "rack-a"`}},
		{"holding a machine", routesBase + "routes:\n  clusterCIDRs: [192.0.2.0/24]\n", []string{`routes.clusterCIDRs[0]: Invalid value: "192.0.2.0/24"`, `machine "n1"`}},
		{"holding a peer", routesBase + "routes:\n  clusterCIDRs: [198.51.100.192/26]\n", []string{`routes.clusterCIDRs[0]: Invalid value: "198.51.100.192/26"`, `BGP peer "tor"`}},
		{"without bgp", "region: lab\nroutes:\n  clusterCIDRs: [203.0.113.128/25]\n", []string{"bgp.asn: Required value", "routes are enabled"}},
		{"unknown field", routesBase + "routes:\n  clusterCIDR: 203.0.113.128/25\n", []string{`unknown field "routes.clusterCIDR"`, `did you mean "clusterCIDRs"?`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse() = %+v, want an error", cfg.Routes)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
