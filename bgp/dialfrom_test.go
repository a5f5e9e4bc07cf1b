package bgp

import (
	"slices"
	"strings"
	"testing"
)

// TestParseDialFrom: dialFrom names the racks whose replicas peer with a
// router; two peers may share an address only when their dialFrom racks
// are disjoint (one entry per way of reaching the router), and a config
// without dialFrom is read as before.
func TestParseDialFrom(t *testing.T) {
	const head = "asn: 64512\npeers:\n"
	for _, tc := range []struct {
		name  string
		peers string
		// racks per peer when valid; nil: every replica.
		racks  [][]string
		fields []string // the fields of the problems, when invalid
	}{
		{
			name:  "without dialFrom: every replica, as before",
			peers: "- {name: tor-a, address: 198.51.100.1, asn: 64513}\n",
			racks: [][]string{nil},
		},
		{
			name:  "direct and multihop entries of one router",
			peers: "- {name: tor-c, address: 198.51.100.129, asn: 64515, dialFrom: {racks: [rack-c]}, ttlSecurity: 1}\n- {name: tor-c-far, address: 198.51.100.129, asn: 64515, dialFrom: {racks: [rack-a, rack-b]}, ebgpMultihop: 2}\n",
			racks: [][]string{{"rack-c"}, {"rack-a", "rack-b"}},
		},
		{
			name:   "overlapping racks share an address",
			peers:  "- {name: x, address: 198.51.100.1, asn: 64513, dialFrom: {racks: [rack-a]}}\n- {name: y, address: 198.51.100.1, asn: 64513, dialFrom: {racks: [rack-b, rack-a]}}\n",
			fields: []string{"bgp.peers[1].address"},
		},
		{
			name:   "an address shared with a peer of every replica",
			peers:  "- {name: x, address: 198.51.100.1, asn: 64513}\n- {name: y, address: 198.51.100.1, asn: 64513, dialFrom: {racks: [rack-b]}}\n",
			fields: []string{"bgp.peers[1].address"},
		},
		{
			name:   "entries of one router with different ASes",
			peers:  "- {name: x, address: 198.51.100.1, asn: 64513, dialFrom: {racks: [rack-a]}}\n- {name: y, address: 198.51.100.1, asn: 64514, dialFrom: {racks: [rack-b]}}\n",
			fields: []string{"bgp.peers[1].address"},
		},
		{
			name:   "entries of one router for different racks' paths",
			peers:  "- {name: x, address: 198.51.100.1, asn: 64513, rack: rack-a, dialFrom: {racks: [rack-a]}}\n- {name: y, address: 198.51.100.1, asn: 64513, rack: rack-b, dialFrom: {racks: [rack-b]}}\n",
			fields: []string{"bgp.peers[1].address"},
		},
		{
			name:   "no racks, a repeated and an empty one",
			peers:  "- {name: x, address: 198.51.100.1, asn: 64513, dialFrom: {racks: []}}\n- {name: y, address: 198.51.100.2, asn: 64513, dialFrom: {racks: [rack-a, rack-a, \"\"]}}\n",
			fields: []string{"bgp.peers[0].dialFrom.racks", "bgp.peers[1].dialFrom.racks[1]", "bgp.peers[1].dialFrom.racks[2]"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, errs := parseYAML(t, head+tc.peers)
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
			}
			if !slices.Equal(got, tc.fields) {
				t.Fatalf("Parse() problems at %v, want %v: %v", got, tc.fields, errs.ToAggregate())
			}
			if tc.fields != nil {
				if !strings.Contains(errs.ToAggregate().Error(), "dialFrom") {
					t.Errorf("the problems %v do not say what dialFrom needs", errs.ToAggregate())
				}
				return
			}
			var racks [][]string
			for _, p := range cfg.Peers {
				racks = append(racks, p.DialFromRacks)
			}
			if !slices.EqualFunc(racks, tc.racks, func(a, b []string) bool { return slices.Equal(a, b) && (a == nil) == (b == nil) }) {
				t.Errorf("dialFrom racks %q, want %q", racks, tc.racks)
			}
		})
	}
}
