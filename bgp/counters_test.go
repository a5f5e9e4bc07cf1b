package bgp

import (
	"fmt"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
)

// TestSessionCounters: Peers counts the UPDATE messages sent to a router
// and the times its session went down after being Established, which the
// provider exports as metrics users alert on.
func TestSessionCounters(t *testing.T) {
	checkNoLeaks(t)
	ctx := testContext(t)
	// No table watcher: the session re-opens, which races with GoBGP v3's
	// watchers (see routerOptions.noUpdateWatch).
	r := startRouter(t, "127.0.0.2", "127.0.0.1", routerOptions{noUpdateWatch: true})
	s := startSpeaker(t, Config{Peers: []Peer{r.peer("tor", "")}})
	waitEstablished(t, s, "tor")
	if err := s.Announce(ctx, Advertisement{Prefix: vip4, NextHops: hops("198.51.100.10", "", 1, 2)}); err != nil {
		t.Fatal(err)
	}
	peerStatus := func() PeerStatus {
		for _, p := range s.Peers() {
			if p.Name == "tor" {
				return p
			}
		}
		t.Fatal("no peer tor")
		return PeerStatus{}
	}
	eventually(t, "updates counted", func() error {
		if p := peerStatus(); p.UpdatesSent == 0 {
			return fmt.Errorf("UpdatesSent = 0 after an announcement")
		}
		return nil
	})
	if p := peerStatus(); p.SessionDrops != 0 {
		t.Errorf("SessionDrops = %d before any drop", p.SessionDrops)
	}

	// The router closes the session; the speaker reconnects.
	if err := r.srv.bgp.ShutdownPeer(ctx, &api.ShutdownPeerRequest{Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the drop counted", func() error {
		if p := peerStatus(); p.SessionDrops != 1 {
			return fmt.Errorf("SessionDrops = %d, want 1", p.SessionDrops)
		}
		return nil
	})
	if err := r.srv.bgp.EnablePeer(ctx, &api.EnablePeerRequest{Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "tor")
	if p := peerStatus(); p.SessionDrops != 1 {
		t.Errorf("SessionDrops = %d after one drop and a reconnect, want 1", p.SessionDrops)
	}
}
