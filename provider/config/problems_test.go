package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestParseReportsEveryProblem checks that a file's problems are reported
// together, whatever their kind — a repeated key, an unknown field, a value
// of the wrong type, an invalid value, a cross-section conflict — each at
// its exact field path, and that a value left out for its type is not
// reported a second time by the validation that follows.
func TestParseReportsEveryProblem(t *testing.T) {
	type problem struct {
		field string
		says  []string // substrings of the problem's message
	}
	for _, tc := range []struct {
		name string
		yaml string
		want []problem // in the order reported
	}{{
		name: "unknown field with invalid values",
		yaml: "region: ''\nzonee: a\nracks:\n- name: Rack_A\n  subnet: [198.51.100.0/25]\n",
		want: []problem{
			{"racks[0].subnet", []string{`unknown field "racks[0].subnet"`, "racks[0] takes name, zone, subnets", `did you mean "subnets"?`}},
			{"zonee", []string{`unknown field "zonee"`, "the top level takes region, racks, machines, pools, bgp, healthCheck, routes"}},
			{"region", []string{"Required value"}},
			{"racks[0].name", []string{`"Rack_A"`, "DNS label"}},
		},
	}, {
		name: "repeated keys with an invalid value",
		yaml: "region: lab\nracks:\n- name: a\n  name: b\n  subnets: [198.51.100.0/33]\nregion: lab\n",
		want: []problem{
			{"racks[0].name", []string{"Duplicate value", "line 4", "line 3"}},
			{"region", []string{"Duplicate value", "line 1", "line 6"}},
			{"racks[0].subnets[0]", []string{`"198.51.100.0/33"`, "must be a CIDR"}},
		},
	}, {
		name: "wrong types are reported once, with the rest",
		yaml: "region: [lab]\nracks: 3\nmachines:\n- name: n1\n  state: halted\n- name: {x: 2}\nbgp:\n  asn: x\n  holdTime: forever\n  peers:\n  - name: tor\n    address: 198.51.100.1\n    asn: 64513\n    port: 99999999999\npools:\n- name: p\n  addresses: [203.0.113.0/28]\n  autoAssign: maybe\n",
		want: []problem{
			{"bgp.asn", []string{`"x"`, "must be a whole number"}},
			{"bgp.holdTime", []string{`"forever"`, "must be a duration"}},
			{"bgp.peers[0].port", []string{"99999999999", "from -2147483648 to 2147483647"}},
			{"machines[1].name", []string{`{"x":2}`, "must be a string"}},
			{"pools[0].autoAssign", []string{`"maybe"`, "must be true or false"}},
			{"racks", []string{"3", "must be a list"}},
			{"region", []string{`["lab"]`, "must be a string"}},
			{"machines[0].state", []string{`"halted"`}},
		},
	}, {
		name: "nested wrong types and unknown fields",
		yaml: "region: lab\nbgp:\n  asn: 64512\n  peers:\n  - name: tor\n    address: 198.51.100.1\n    asn: 64513\n    pasword: x\npools:\n- name: p\n  addresses: 203.0.113.0/28\n  serviceSelector: {matchLabels: {tier: [a]}, matchLabel: {}}\n",
		want: []problem{
			{"bgp.peers[0].pasword", []string{`unknown field "bgp.peers[0].pasword"`, "passwordFile"}},
			{"pools[0].addresses", []string{`"203.0.113.0/28"`, "must be a list"}},
			{"pools[0].serviceSelector.matchLabel", []string{"unknown field", `did you mean "matchLabels"?`}},
			{"pools[0].serviceSelector.matchLabels[tier]", []string{"must be a string"}},
		},
	}, {
		name: "pools overlapping a rack or holding a peer",
		yaml: "region: lab\nracks:\n- name: rack-a\n  subnets: [198.51.100.0/25, 2001:db8:1::/64]\nbgp:\n  asn: 64512\n  peers:\n  - name: tor-a\n    address: 198.51.100.1\n    asn: 64513\n  - name: remote\n    address: 203.0.113.9\n    asn: 64514\n    ebgpMultihop: 2\npools:\n- name: public\n  addresses: [203.0.113.0/28, 198.51.100.64-198.51.100.200, 2001:db8:1::/48, 192.0.2.0/24]\n",
		want: []problem{
			{"pools[0].addresses[0]", []string{`"203.0.113.0/28"`, `contains 203.0.113.9, the address of BGP peer "remote" (bgp.peers[1].address)`}},
			{"pools[0].addresses[1]", []string{`"198.51.100.64-198.51.100.200"`, `overlaps subnet 198.51.100.0/25 of rack "rack-a" (racks[0].subnets[0])`}},
			{"pools[0].addresses[2]", []string{`"2001:db8:1::/48"`, `overlaps subnet 2001:db8:1::/64 of rack "rack-a" (racks[0].subnets[1])`}},
		},
	}, {
		name: "unusable pool ranges",
		yaml: "region: lab\nbgp:\n  asn: 64512\npools:\n- name: all\n  addresses: [0.0.0.0/0, '::/0']\n- name: odd\n  addresses: [127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 'fe80::/64', 'ff00::/8', '::/128']\n",
		want: []problem{
			{"pools[0].addresses[0]", []string{"is every IPv4 address"}},
			{"pools[0].addresses[1]", []string{"is every IPv6 address"}},
			{"pools[1].addresses[0]", []string{"loopback"}},
			{"pools[1].addresses[1]", []string{"link-local"}},
			{"pools[1].addresses[2]", []string{"multicast"}},
			{"pools[1].addresses[3]", []string{"link-local"}},
			{"pools[1].addresses[4]", []string{"multicast"}},
			{"pools[1].addresses[5]", []string{"unspecified"}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			var invalid *InvalidError
			if !errors.As(err, &invalid) {
				t.Fatalf("Parse = %v, want an *InvalidError", err)
			}
			var got []string
			for _, p := range invalid.Problems {
				got = append(got, p.Field)
			}
			var want []string
			for _, p := range tc.want {
				want = append(want, p.field)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("Parse reported problems at\n  %s\nwant\n  %s\nfull error:\n%v", strings.Join(got, "\n  "), strings.Join(want, "\n  "), err)
			}
			for i, p := range tc.want {
				msg := invalid.Problems[i].Error()
				for _, s := range p.says {
					if !strings.Contains(msg, s) {
						t.Errorf("problem %d = %q, want it to say %q", i, msg, s)
					}
				}
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("%d problem(s):\n", len(tc.want))) || strings.Count(err.Error(), "\n") != len(tc.want) {
				t.Errorf("Parse error = %q, want a header line and one line per problem", err)
			}
		})
	}
}

// TestParseWarnings checks that a router ID in the shared file is accepted
// with a warning that says what to use instead, and that a file without one
// has no warning.
// dialFromRacks are two racks for the dialFrom warnings.
const dialFromRacks = "region: lab\nracks:\n- {name: rack-a, subnets: [198.51.100.0/26]}\n- {name: rack-b, subnets: [198.51.100.64/26]}\n"

func TestParseWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the one warning; nil: none
	}{
		{"router ID in the file", "region: lab\nbgp:\n  asn: 64512\n  routerID: 192.0.2.1\n",
			[]string{"bgp.routerID: 192.0.2.1", "every replica", "--bgp-router-id", "$NODE_IP"}},
		{"router ID left to the replicas", "region: lab\nbgp:\n  asn: 64512\n", nil},
		{"no bgp section", "region: lab\n", nil},
		{"another rack's replicas dial a ToR with TTL 1", dialFromRacks + "bgp:\n  asn: 64512\n  peers:\n  - {name: tor-a, address: 198.51.100.1, asn: 64513, rack: rack-a, dialFrom: {racks: [rack-a, rack-b]}}\n",
			[]string{"bgp.peers[0] (tor-a)", "rack-b", "ebgpMultihop"}},
		{"another rack's replicas dial a ToR over multihop", dialFromRacks + "bgp:\n  asn: 64512\n  peers:\n  - {name: tor-a, address: 198.51.100.1, asn: 64513, rack: rack-a, ebgpMultihop: 2, dialFrom: {racks: [rack-b]}}\n", nil},
		{"the rack's own replicas dial its ToR with TTL 1", dialFromRacks + "bgp:\n  asn: 64512\n  peers:\n  - {name: tor-a, address: 198.51.100.1, asn: 64513, rack: rack-a, ttlSecurity: 1, dialFrom: {racks: [rack-a]}}\n", nil},
		{"iBGP needs no multihop", dialFromRacks + "bgp:\n  asn: 64512\n  peers:\n  - {name: tor-a, address: 198.51.100.1, asn: 64512, rack: rack-a, dialFrom: {racks: [rack-b]}}\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml))
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if tc.want == nil {
				if len(cfg.Warnings) != 0 {
					t.Errorf("Warnings = %q, want none", cfg.Warnings)
				}
				return
			}
			if len(cfg.Warnings) != 1 {
				t.Fatalf("Warnings = %q, want one", cfg.Warnings)
			}
			for _, s := range tc.want {
				if !strings.Contains(cfg.Warnings[0], s) {
					t.Errorf("warning %q does not say %q", cfg.Warnings[0], s)
				}
			}
		})
	}
}
