package provider

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// Ready tells whether this replica announces: its cloud config is loaded
// (it is, once the cloud exists), the announcer has handed the speaker
// the whole desired state at least once, and at least one of its BGP
// sessions is Established: all of them, or at least one once readyGrace
// has passed. A replica with no router to peer with is ready once it has
// synced, unless that is because its rack is unknown. The DaemonSet's
// readiness probe asks it (/readyz),
// so that a rolling update takes the next replica down only once the new
// one announces.
func (c *cloud) Ready() error {
	if !c.synced.Load() {
		return errors.New("the announcer has not synced yet")
	}
	cfg := c.config()
	if cfg.BGP.ASN == 0 {
		return nil
	}
	// The routers this replica is to peer with, whether or not their
	// sessions are configured yet (they open after the first sync).
	rack := c.replicaRack(cfg)
	want := replicaPeers(cfg.BGP.Peers, rack)
	if len(want) == 0 && rack == "" && len(cfg.BGP.Peers) > 0 {
		// Every router has dialFrom and this replica's rack is unknown:
		// it announces nothing, which is a misconfiguration, not a
		// replica with nothing to do.
		return fmt.Errorf("the rack of this replica's node is unknown (--node-name %q, NODE_IP %q): it peers with none of the %d routers, which all have dialFrom", c.opts.NodeName, os.Getenv("NODE_IP"), len(cfg.BGP.Peers))
	}
	if len(want) == 0 {
		return nil
	}
	established := 0
	if sp := c.speaker(); sp != nil {
		for _, p := range sp.Peers() {
			if p.State == bgp.StateEstablished {
				established++
			}
		}
	}
	return sessionsReady(len(want), established, time.Since(time.Unix(0, c.syncedAt.Load())))
}

// readyGrace is how long after its first sync a replica with some but
// not all of its sessions Established waits for the others before it
// calls itself ready: long enough for every router of a healthy fabric to
// take the session (GoBGP retries a connect every 5 s), short enough that
// a router that is down does not hold a rolling update for ever.
const readyGrace = 30 * time.Second

// sessionsReady decides readiness from the sessions: every one of the
// replica's want sessions Established, or at least one once readyGrace
// has passed since the first sync. With one session only, a rolling
// update took the old replica down while the new one had not yet reached
// every router, and a router without paths broke flows.
func sessionsReady(want, established int, sinceSync time.Duration) error {
	switch {
	case established >= want:
		return nil
	case established == 0:
		return fmt.Errorf("none of the %d BGP sessions is Established", want)
	case sinceSync >= readyGrace:
		return nil
	default:
		return fmt.Errorf("%d of the %d BGP sessions are Established; waiting for the others (up to %s after the first sync)", established, want, readyGrace)
	}
}

// onSync takes the outcomes the announcer reports after each sync, and
// the Services they may have changed for (nil: any). The Services'
// conditions follow them once the sessions are open: before, no router
// could have been reached, and saying so would be a moment's noise at
// every start. The first outcomes the status writer sees are about every
// Service.
func (c *cloud) onSync(an *announcements, changed []string) {
	c.syncedAt.CompareAndSwap(0, time.Now().UnixNano())
	c.synced.Store(true)
	c.lastSync.Store(an)
	if !c.sessions.open.Load() {
		return
	}
	if !c.statusObservedAll.Load() {
		changed = nil
	}
	if changed == nil {
		c.statusObservedAll.Store(true)
	}
	c.status.observe(an, changed)
}
