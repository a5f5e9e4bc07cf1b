package realnode

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// TestCloudConfigPeersByRack: the lab's cloud config is valid, and the
// replica of every rack dials its own rack's ToR directly with GTSM and
// every other ToR over multihop, once each (docs/reference/config.md).
func TestCloudConfigPeersByRack(t *testing.T) {
	c := &Cluster{passwords: map[string]string{}}
	for i, rp := range Plan {
		c.Racks = append(c.Racks, &Rack{RackPlan: rp, Index: i, Core: torCoreAddr(i)})
	}
	// The password files are the mounted Secret's in the pod; here, files
	// of a temporary directory.
	dir := t.TempDir()
	for _, r := range c.Racks {
		if err := os.WriteFile(filepath.Join(dir, r.torName()), []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text := strings.ReplaceAll(c.CloudConfig(), "/etc/baremetal-ccm-bgp/", dir+"/")
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatalf("the lab's cloud config: %v\n%s", err, text)
	}
	for _, replica := range c.Racks {
		seen := map[string]bool{}
		for _, p := range cfg.BGP.Peers {
			if p.DialFromRacks == nil {
				t.Errorf("peer %s has no dialFrom: every replica would dial it", p.Name)
				continue
			}
			if !slices.Contains(p.DialFromRacks, replica.Name) {
				continue
			}
			tor := gateway(replica.RackPlan)
			direct := p.Address == tor
			if seen[p.Address.String()] {
				t.Errorf("a replica in %s dials %s twice", replica.Name, p.Address)
			}
			seen[p.Address.String()] = true
			switch {
			case direct && (p.TTLSecurity != 1 || p.EBGPMultihop != 0):
				t.Errorf("%s: a replica in %s dials its own ToR with GTSM %d, multihop %d; want GTSM 1, no multihop", p.Name, replica.Name, p.TTLSecurity, p.EBGPMultihop)
			case !direct && (p.EBGPMultihop != multihopTTL || p.TTLSecurity != 0):
				t.Errorf("%s: a replica in %s dials another rack's ToR with multihop %d, GTSM %d; want multihop %d", p.Name, replica.Name, p.EBGPMultihop, p.TTLSecurity, multihopTTL)
			}
		}
		if len(seen) != len(c.Racks) {
			t.Errorf("a replica in %s dials %d ToRs, want every one of the %d", replica.Name, len(seen), len(c.Racks))
		}
	}
}
