package provider

import "sync"

// dirtySet records what changed since the announcer's last sync, so that
// the next sync recomputes only the VIPs those changes can move. The
// informers' handlers fill it; the sync loop takes it whole. It is safe
// for concurrent use.
type dirtySet struct {
	mu sync.Mutex
	changes
}

// changes are the changes one sync works on.
type changes struct {
	// all: recompute every VIP (first sync, config reload, sessions,
	// periodic resync, a failed sync).
	all bool
	// nodes: a Node changed what makes it a candidate (eligibility,
	// addresses, age): the candidates are recomputed and compared.
	nodes bool
	// health: a node's health check flipped.
	health bool
	// services holds the namespace/name of the Services that changed.
	services map[string]struct{}
	// verify counts the slices of the periodic re-assertion due (see
	// verifyDirty), at most resyncSlices.
	verify int
}

func (d *dirtySet) markAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.all = true
}

func (d *dirtySet) markNodes() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nodes = true
}

func (d *dirtySet) markHealth() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.health = true
}

// markVerify asks for the next slice of the periodic re-assertion.
func (d *dirtySet) markVerify() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.verify = min(d.verify+1, resyncSlices)
}

func (d *dirtySet) markService(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.services == nil {
		d.services = map[string]struct{}{}
	}
	d.services[key] = struct{}{}
}

// nodesPending tells whether the next sync will recompute the
// candidates: a Node changed, or everything is to be recomputed.
func (d *dirtySet) nodesPending() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodes || d.all
}

// take returns what changed and empties the set.
func (d *dirtySet) take() changes {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.changes
	d.changes = changes{}
	return c
}

// empty tells whether c asks for no work at all.
func (c *changes) empty() bool {
	return !c.all && !c.nodes && !c.health && len(c.services) == 0 && c.verify == 0
}
