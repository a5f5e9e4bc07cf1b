package provider

import (
	"strings"
	"testing"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// TestReadyWithoutPeers: before a session is up, readiness names why; a
// replica that peers with nobody by the config's choice is ready, one
// whose rack is unknown while every router has dialFrom is not (it would
// announce nothing). The Established case is TestReadyz's, with real
// sessions (test/integration).
func TestReadyWithoutPeers(t *testing.T) {
	all := strings.Replace(peeringConfig, "  - {name: core, address: 203.0.113.254, asn: 64600}\n", "", 1)
	for _, tc := range []struct {
		name, conf, nodeIP string
		synced             bool
		want               string // part of the error; empty: ready
	}{
		{"not synced", peeringConfig, "198.51.100.75", false, "has not synced"},
		{"sessions not up", peeringConfig, "198.51.100.75", true, "none of the 4 BGP sessions"},
		{"a rack nobody dials from, a router without dialFrom", peeringConfig, "198.51.100.140", true, "none of the 1 BGP sessions"},
		{"a rack nobody dials from", all, "198.51.100.140", true, ""},
		{"rack unknown, every router with dialFrom", all, "", true, "rack of this replica's node is unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.conf))
			if err != nil {
				t.Fatal(err)
			}
			t.Setenv("NODE_IP", tc.nodeIP)
			c := &cloud{}
			c.cfg.Store(cfg)
			c.synced.Store(tc.synced)
			err = c.Ready()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Ready() = %v, want ready", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Ready() = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestSessionsReady: ready once every session is up, or once one is and
// the grace after the first sync has passed; never with none.
func TestSessionsReady(t *testing.T) {
	for _, tc := range []struct {
		want, established int
		since             time.Duration
		ready             bool
	}{
		{3, 3, 0, true},
		{3, 2, 0, false},
		{3, 2, readyGrace - time.Second, false},
		{3, 2, readyGrace, true},
		{3, 0, time.Hour, false},
		{1, 1, 0, true},
	} {
		err := sessionsReady(tc.want, tc.established, tc.since)
		if (err == nil) != tc.ready {
			t.Errorf("sessionsReady(%d, %d, %s) = %v, want ready %v", tc.want, tc.established, tc.since, err, tc.ready)
		}
	}
}
