package provider

import "net/netip"

// nodeTargets keeps the health checker's targets equal to the nodes.
type nodeTargets struct{ c *cloud }

func (t nodeTargets) OnAdd(any, bool)   { t.c.updateHealthTargets() }
func (t nodeTargets) OnUpdate(any, any) { t.c.updateHealthTargets() }
func (t nodeTargets) OnDelete(any)      { t.c.updateHealthTargets() }

// updateHealthTargets probes each node at its first InternalIP (IPv4
// first: kube-proxy's healthz listens on all addresses by default).
func (c *cloud) updateHealthTargets() {
	nodes, err := c.nodes.List(everything)
	if err != nil {
		return
	}
	cfg := c.config()
	port := uint16(cfg.HealthCheck.Port)
	targets := make(map[string]netip.AddrPort, len(nodes))
	for _, n := range nodes {
		var best netip.Addr
		for _, a := range newCandidate(n, cfg).addrs {
			if !best.IsValid() || (a.Is4() && !best.Is4()) {
				best = a
			}
		}
		if best.IsValid() {
			targets[n.Name] = netip.AddrPortFrom(best, port)
		}
	}
	c.checker.SetTargets(targets)
}
