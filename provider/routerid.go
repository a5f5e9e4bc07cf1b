package provider

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"k8s.io/apimachinery/pkg/labels"
)

var everything = labels.Everything()

// routerID picks the BGP router ID: the config's bgp.routerID, else the
// --bgp-router-id flag, else $NODE_IP (the DaemonSet sets it from the
// downward API) when it is IPv4, else the host's first global IPv4 address.
// Every replica needs its own: two speakers with one ID confuse the routers.
func routerID(fromConfig netip.Addr, flag string) (netip.Addr, error) {
	if fromConfig.IsValid() {
		return fromConfig, nil
	}
	if flag != "" {
		id, err := netip.ParseAddr(flag)
		if err != nil || !id.Is4() {
			return netip.Addr{}, fmt.Errorf("--bgp-router-id=%q: must be an IPv4 address", flag)
		}
		return id, nil
	}
	if s := os.Getenv("NODE_IP"); s != "" {
		if id, err := netip.ParseAddr(s); err == nil && id.Is4() {
			return id, nil
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("finding a router ID: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && ip.IsGlobalUnicast() {
				return ip.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, errors.New("no BGP router ID: set bgp.routerID, --bgp-router-id or $NODE_IP (an IPv4 address)")
}
