package bgp

import (
	"context"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// onEvent is the router's session state callback: it must never block.
func (s *Speaker) onEvent(ev peerEvent) {
	select {
	case s.events <- ev:
	default:
		s.droppedEvents.Add(1)
	}
}

func (s *Speaker) eventLoop(ctx context.Context) {
	log := klog.FromContext(ctx)
	last := map[string]SessionState{}
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-s.events:
			key := ev.addr.String()
			s.handlePeerEvent(log, ev, last[key])
			last[key] = ev.state
		}
	}
}

// handlePeerEvent logs a session's state change: coming up and going down
// at V(0), the attempts in between at V(2).
func (s *Speaker) handlePeerEvent(log logr.Logger, ev peerEvent, prev SessionState) {
	addr := ev.addr
	var name string
	s.statMu.Lock()
	for _, a := range s.applied {
		if a.Address == addr {
			name = a.Name
		}
	}
	if prev == StateEstablished && ev.state != StateEstablished {
		s.drops[addr]++
	}
	s.statMu.Unlock()
	switch {
	case ev.state == StateEstablished:
		log.Info("BGP session established", "peer", name, "address", addr)
	case prev == StateEstablished:
		log.Info("BGP session down", "peer", name, "address", addr, "state", ev.state)
	default:
		log.V(2).Info("BGP session state changed", "peer", name, "address", addr, "state", ev.state)
	}
	if ev.state != StateEstablished {
		return
	}
	for _, st := range s.Peers() {
		if st.Address != addr || !st.SinglePath {
			continue
		}
		for _, f := range st.Families {
			if f.Negotiated && !f.AddPath {
				log.Info("Warning: router did not negotiate ADD-PATH; it gets one path per VIP, the path via the node of highest rendezvous weight",
					"peer", name, "address", addr, "family", f.Family)
			}
		}
	}
}
