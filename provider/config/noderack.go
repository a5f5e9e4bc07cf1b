package config

import "net/netip"

// NodeRack returns the rack of a node: its machine's in the inventory,
// else the rack whose subnets hold the first of addrs that lies in one.
// It is the one rule for a node's rack: the zone it is initialised with
// and the routers it is announced to both follow it.
func (c *Config) NodeRack(node string, addrs []netip.Addr) (Rack, bool) {
	if m, ok := c.Machines[node]; ok && m.Rack != "" {
		return c.Rack(m.Rack)
	}
	return c.rackOfAny(addrs)
}

// rackOfAny returns the rack of the first of addrs that lies in a rack.
func (c *Config) rackOfAny(addrs []netip.Addr) (Rack, bool) {
	for _, a := range addrs {
		if r, ok := c.RackOf(a); ok {
			return r, true
		}
	}
	return Rack{}, false
}
