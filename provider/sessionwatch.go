package provider

import (
	"context"
	"slices"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
)

// sessionPollInterval is how often the sessions' states are compared with
// the last ones seen: a session that comes up or goes down shows in the
// Services' conditions this much later, at most.
const sessionPollInterval = time.Second

// watchSessions asks the announcer for a sync whenever the set of
// Established sessions changes, so that the conditions, which count the
// routers reached, follow the sessions and not only the resync. It ends
// with ctx.
func (c *cloud) watchSessions(ctx context.Context) {
	t := time.NewTicker(sessionPollInterval)
	defer t.Stop()
	var last []string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		up := establishedPeers(c.speaker())
		if !slices.Equal(up, last) {
			last = up
			c.announcer.Trigger()
		}
	}
}

// establishedPeers names the routers whose session is Established, sorted.
func establishedPeers(sp speaker) []string {
	if sp == nil {
		return nil
	}
	var up []string
	for _, p := range sp.Peers() {
		if p.State == bgp.StateEstablished {
			up = append(up, p.Name)
		}
	}
	slices.Sort(up)
	return up
}
