package config

import "fmt"

// warnings returns the settings of f that are valid but probably wrong.
//
// The cloud config is a ConfigMap mounted into the DaemonSet, read by
// every replica: a BGP router ID in it is the same on every replica, and
// routers tell speakers apart by it. The file cannot know how many
// replicas read it, so a router ID there is always worth a warning.
func warnings(f *File) []string {
	var out []string
	if f.BGP != nil && f.BGP.RouterID != "" {
		out = append(out, fmt.Sprintf("bgp.routerID: %s is set in the cloud config, which every replica reads, so every replica would use the same BGP identifier; remove it and let each replica take its own from --bgp-router-id or $NODE_IP", f.BGP.RouterID))
	}
	return out
}
