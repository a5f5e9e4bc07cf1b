package provider

import (
	"slices"
	"strings"
	"testing"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

const peeringConfig = `
region: lab
racks:
- name: rack-a
  subnets: [198.51.100.0/26]
- name: rack-b
  subnets: [198.51.100.64/26]
- name: rack-c
  subnets: [198.51.100.128/26]
machines:
- name: cp-a1
  rack: rack-a
- name: cp-b1
  addresses: [198.51.100.70]
- name: worker-c1
  addresses: [198.51.100.140]
bgp:
  asn: 64512
  peers:
  - {name: core, address: 203.0.113.254, asn: 64600}
  - {name: tor-a, address: 198.51.100.1, asn: 64513, rack: rack-a, dialFrom: {racks: [rack-a, rack-b]}}
  - {name: tor-b, address: 198.51.100.65, asn: 64514, rack: rack-b, dialFrom: {racks: [rack-b, rack-a]}}
  - {name: tor-c, address: 198.51.100.129, asn: 64515, rack: rack-c, dialFrom: {racks: [rack-a]}, ebgpMultihop: 2}
  - {name: tor-c-b, address: 198.51.100.129, asn: 64515, rack: rack-c, dialFrom: {racks: [rack-b]}, ebgpMultihop: 2}
`

// TestReplicaPeers: a replica peers with the routers without dialFrom and
// those whose dialFrom holds its rack, which the inventory (by node name)
// or the rack subnets (by $NODE_IP) give.
func TestReplicaPeers(t *testing.T) {
	cfg, err := config.Parse([]byte(peeringConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, node, nodeIP string
		rack               string
		peers              []string
	}{
		{"rack from the inventory", "cp-a1", "", "rack-a", []string{"core", "tor-a", "tor-b", "tor-c"}},
		{"rack from the inventory's addresses", "cp-b1", "", "rack-b", []string{"core", "tor-a", "tor-b", "tor-c-b"}},
		{"rack from $NODE_IP", "cp-x", "198.51.100.75", "rack-b", []string{"core", "tor-a", "tor-b", "tor-c-b"}},
		{"a rack nobody dials from", "", "198.51.100.140", "rack-c", []string{"core"}},
		{"rack unknown: the routers without dialFrom only", "", "", "", []string{"core"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NODE_IP", tc.nodeIP)
			c := &cloud{opts: Options{NodeName: tc.node}}
			rack := c.replicaRack(cfg)
			if rack != tc.rack {
				t.Errorf("replicaRack() = %q, want %q", rack, tc.rack)
			}
			if got := peerNames(replicaPeers(cfg.BGP.Peers, rack)); !slices.Equal(got, tc.peers) {
				t.Errorf("replicaPeers(%q) = %v, want %v", rack, got, tc.peers)
			}
		})
	}
}

func TestDialFromUnknownRack(t *testing.T) {
	_, err := config.Parse([]byte(strings.Replace(peeringConfig, "dialFrom: {racks: [rack-a]}", "dialFrom: {racks: [rack-z]}", 1)))
	if err == nil || !strings.Contains(err.Error(), "bgp.peers[3].dialFrom.racks[0]") || !strings.Contains(err.Error(), "rack-z") {
		t.Errorf("Parse() = %v, want the unknown rack named at its path", err)
	}
}
