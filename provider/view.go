package provider

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	v1 "k8s.io/api/core/v1"

	"github.com/baremetal-ccm/baremetal-ccm/bgp"
	"github.com/baremetal-ccm/baremetal-ccm/ipam"
	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/provider/service"
)

// override replaces (or, gone, removes) one Service in a view.
type override struct {
	svc   *v1.Service
	addrs []netip.Addr
	gone  bool
}

// view is one consistent picture of what is to be announced.
type view struct {
	cfg        *config.Config
	candidates []candidate
	// holders maps each VIP to the Services holding it (several when
	// shared), oldest first.
	holders map[netip.Addr][]*v1.Service
	// hopBuf is advertisement's scratch space, reused VIP after VIP.
	hopBuf [2][]bgp.NextHop
}

// view builds the picture of o (nil: none) and the other Services, over
// cands (see freshCandidates): of every VIP when scope is nil, else of the
// VIPs in scope only, looking at their holders alone (a Service's sync
// costs the same with 10 or 10,000 Services). Addresses that may not be
// announced (mayAnnounce) are left out, with a Warning on their Service
// when scope is nil.
func (a *announcer) view(cfg *config.Config, cands []candidate, o *override, scope []netip.Addr) (*view, error) {
	v := &view{cfg: cfg, candidates: cands, holders: map[netip.Addr][]*v1.Service{}}
	isOverride := func(s *v1.Service) bool {
		return o != nil && s.Namespace == o.svc.Namespace && s.Name == o.svc.Name
	}
	add := func(s *v1.Service, ip netip.Addr) {
		v.holders[ip] = append(v.holders[ip], s)
	}
	if scope == nil {
		svcs, err := a.services.List(everything)
		if err != nil {
			return nil, fmt.Errorf("listing services: %w", err)
		}
		for _, s := range svcs {
			addrs := a.checkedAddresses(s)
			if isOverride(s) {
				continue
			}
			for _, ip := range addrs {
				add(s, ip)
			}
		}
	} else {
		for _, vip := range scope {
			svcs, err := a.holdersOf(vip)
			if err != nil {
				return nil, err
			}
			for _, s := range svcs {
				if !isOverride(s) && service.Announceable(s) {
					add(s, vip)
				}
			}
		}
	}
	if o != nil && !o.gone && service.Announceable(o.svc) {
		for _, ip := range o.addrs {
			if scope == nil || slices.Contains(scope, ip) {
				add(o.svc, ip)
			}
		}
	}
	a.dropUnannounceable(v)
	for _, hs := range v.holders {
		sort.Slice(hs, func(i, j int) bool { return olderService(hs[i], hs[j]) })
	}
	return v, nil
}

// freshCandidates lists the Nodes and returns the candidates among them
// (see candidates), reporting the Nodes that lost an address to an older
// one and those outside every rack.
func (a *announcer) freshCandidates(cfg *config.Config) ([]candidate, error) {
	nodes, err := a.nodes.List(everything)
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	cands, dups := candidates(nodes, cfg)
	a.reportDuplicates(nodes, dups)
	a.reportRackless(nodes, cfg)
	return cands, nil
}

// candidatesNow returns the candidates a sync of one Service works with:
// those the index was computed with while they are current (the index is
// for this speaker and config, and no Node change is marked for the sync
// loop), else a fresh listing. At 1,000 Nodes the listing costs most of an
// EnsureLoadBalancer. A Node change whose event is still on its way, or
// that the sync loop has taken but not yet applied, is set right by that
// sync, as for every VIP the Node touches. Callers hold mu.
func (a *announcer) candidatesNow(cfg *config.Config, sp speaker) ([]candidate, error) {
	if a.index != nil && a.sentTo == sp && a.cfg == cfg && !a.dirty.nodesPending() {
		return a.cands, nil
	}
	return a.freshCandidates(cfg)
}

// dropUnannounceable removes the VIPs no replica may announce: addresses
// in no pool this process has had in force, which only a write to a
// Service's status could have put there (see warnUnannounceable).
func (a *announcer) dropUnannounceable(v *view) {
	for ip := range v.holders {
		if !a.mayAnnounce(ip) {
			delete(v.holders, ip)
		}
	}
}

// checkedAddresses returns the addresses of an announceable Service (see
// addressesOf), none for another, after warnUnannounceable has looked at
// them: what every pass over Services starts with.
func (a *announcer) checkedAddresses(s *v1.Service) []netip.Addr {
	if !service.Announceable(s) {
		return nil
	}
	addrs := a.addressesOf(s)
	a.warnUnannounceable(s, addrs)
	return addrs
}

// warnUnannounceable puts a Warning on a Service whose status, or
// allocation (addrs, from addressesOf), has an address that may not be
// announced, once per change,
// and clears it when there is none. The leader announces what its
// allocator holds, so a forged status address is never announced there,
// but it is reported all the same.
func (a *announcer) warnUnannounceable(s *v1.Service, addrs []netip.Addr) {
	var bad []netip.Addr
	for _, ip := range append(service.StatusAddrs(s), addrs...) {
		if !a.mayAnnounce(ip) && !slices.Contains(bad, ip) {
			bad = append(bad, ip)
		}
	}
	if len(bad) == 0 {
		a.warn.clear(serviceRef(s), reasonAddressNotAnnounced)
		return
	}
	slices.SortFunc(bad, netip.Addr.Compare)
	a.warn.warnOnce(serviceRef(s), reasonAddressNotAnnounced,
		fmt.Sprintf("address %v in the status is in no address pool of the cloud config: not announced", bad))
}

// holdersOf returns the Services whose addresses (see addressesOf) include
// vip: the ones the allocator says hold it, and the ones whose status has
// it.
func (a *announcer) holdersOf(vip netip.Addr) ([]*v1.Service, error) {
	objs, err := a.byVIP.ByIndex(indexByVIP, vip.String())
	if err != nil {
		return nil, fmt.Errorf("looking up the Services of %s: %w", vip, err)
	}
	var out []*v1.Service
	seen := map[string]bool{}
	add := func(s *v1.Service) {
		key := s.Namespace + "/" + s.Name
		if !seen[key] && slices.Contains(a.addressesOf(s), vip) {
			seen[key] = true
			out = append(out, s)
		}
	}
	for _, obj := range objs {
		if s, ok := obj.(*v1.Service); ok {
			add(s)
		}
	}
	for _, h := range a.alloc.Holders(vip) {
		s, err := a.services.Services(h.Namespace).Get(h.Name)
		if err != nil {
			continue // not in the cache yet, or gone: it holds nothing to announce
		}
		add(s)
	}
	return out, nil
}

// addressesOf returns a Service's VIPs: on the leader, what the allocator
// assigned it, and what its status still shows that the allocator holds
// for it (an address a changed request replaced stays announced until the
// status moves on, see ipam's Settle); elsewhere, what its status says.
func (a *announcer) addressesOf(s *v1.Service) []netip.Addr {
	assigned := a.alloc.Assigned(s.Namespace, s.Name)
	if assigned == nil {
		return service.StatusAddrs(s)
	}
	addrs := slices.Clone(assigned)
	for _, ip := range service.StatusAddrs(s) {
		if !slices.Contains(addrs, ip) && slices.ContainsFunc(a.alloc.Holders(ip), func(h ipam.Assignment) bool {
			return h.Namespace == s.Namespace && h.Name == s.Name
		}) {
			addrs = append(addrs, ip)
		}
	}
	return addrs
}

func olderService(a, b *v1.Service) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

func (v *view) vips() []netip.Addr {
	vips := make([]netip.Addr, 0, len(v.holders))
	for ip := range v.holders {
		vips = append(vips, ip)
	}
	slices.SortFunc(vips, func(a, b netip.Addr) int { return a.Compare(b) })
	return vips
}
