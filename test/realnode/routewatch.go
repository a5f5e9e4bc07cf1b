package realnode

import (
	"context"
	"fmt"
	"strings"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// routeTimeLayout is how ip -ts monitor stamps a line (local time).
const routeTimeLayout = "2006-01-02T15:04:05.000000"

// RouteChanges records the kernel route changes of every ToR and the
// client while a scenario runs: when a request fails, they say whether the
// fabric moved its flow (a next hop added or removed, a route replaced)
// at that moment.
type RouteChanges struct {
	watches []namedWatch
}

type namedWatch struct {
	name string
	w    *fabric.RouteWatch
}

// WatchRoutes starts recording. Stop it when the scenario ends.
func (c *Cluster) WatchRoutes(ctx context.Context) (*RouteChanges, error) {
	rc := &RouteChanges{}
	add := func(name string, ns *fabric.Namespace) error {
		w, err := fabric.WatchRoutes(ctx, ns)
		if err != nil {
			return err
		}
		rc.watches = append(rc.watches, namedWatch{name, w})
		return nil
	}
	for _, r := range c.Racks {
		if err := add(r.torName(), r.NS); err != nil {
			rc.Stop()
			return nil, err
		}
	}
	if err := add("client", c.Client); err != nil {
		rc.Stop()
		return nil, err
	}
	return rc, nil
}

// Stop ends the recording; Report still reads it.
func (rc *RouteChanges) Stop() {
	for _, nw := range rc.watches {
		nw.w.Stop()
	}
}

// maxReportedChanges bounds a report: the changes after it are counted.
const maxReportedChanges = 60

// Report returns the recorded changes, per router, in a failure report's
// format (see formatChanges).
func (rc *RouteChanges) Report() string {
	lines := make(map[string][]string, len(rc.watches))
	names := make([]string, 0, len(rc.watches))
	for _, nw := range rc.watches {
		names = append(names, nw.name)
		lines[nw.name] = nw.w.Lines()
	}
	return formatChanges(names, lines)
}

// formatChanges lists the routers' changes in names' order, a line each:
// the VIPs', the pod routes' and the nexthop groups' (a route through one
// names only its id), not the IPv6 link-local and multicast routes every
// new link brings; at most maxReportedChanges, then how many more; and
// " (none)" when nothing changed.
func formatChanges(names []string, lines map[string][]string) string {
	var b strings.Builder
	n := 0
	for _, name := range names {
		for _, l := range lines[name] {
			if strings.Contains(l, "fe80::") || strings.Contains(l, "multicast ff00::") {
				continue
			}
			if n++; n <= maxReportedChanges {
				fmt.Fprintf(&b, "\n  %s: %s", name, l)
			}
		}
	}
	switch {
	case n == 0:
		return " (none)"
	case n > maxReportedChanges:
		fmt.Fprintf(&b, "\n  … and %d more", n-maxReportedChanges)
	}
	return b.String()
}
