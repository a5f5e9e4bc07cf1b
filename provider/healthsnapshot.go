package provider

// healthSnapshot is what the health check said of each candidate when
// the announcer last computed the VIPs it may carry: a later flip is
// found by comparing (see syncChanges).
type healthSnapshot map[string]bool

var _ healthView = healthSnapshot(nil)

func newHealthSnapshot(cands []candidate, h healthView) healthSnapshot {
	s := make(healthSnapshot, len(cands))
	for _, c := range cands {
		s[c.name] = h.Healthy(c.name)
	}
	return s
}

// Healthy answers for the candidates it was taken of; a node it does not
// know is no candidate and is never asked.
func (s healthSnapshot) Healthy(node string) bool { return s[node] }
