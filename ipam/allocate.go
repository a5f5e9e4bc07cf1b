package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	memdb "github.com/hashicorp/go-memdb"
	v1 "k8s.io/api/core/v1"
)

// Allocate returns the addresses of a Service, allocating them if needed.
//
// It is idempotent: a Service that asks again for what it asked before gets
// the addresses it holds, whatever has happened since (a pool removed, the
// Service's namespace no longer allowed): a held address is never taken
// away. A Service whose request changed (requested addresses, pool
// annotation, families) gets addresses for the new request, keeping each
// held address that still fits it. On error the Service keeps what it had
// (see Assigned) and nothing changes.
//
// The request comes from the Service:
//
//   - Families: spec.ipFamilies and spec.ipFamilyPolicy. SingleStack gets
//     the first family; PreferDualStack both when the pool offers both,
//     else the first; RequireDualStack both or ErrDualStackUnavailable.
//     With spec.ipFamilies empty (the API server always fills it; other
//     clients may not) the chosen pool decides, its first family first.
//   - Addresses: annotation AnnotationLoadBalancerIPs, else
//     spec.loadBalancerIP. The Service gets exactly these (one per
//     family), each in a pool that serves it (autoAssign does not matter)
//     and free or shareable.
//   - Pool: annotation AnnotationPool, else the first pool in configuration
//     order that has autoAssign, serves the Service (namespaces,
//     serviceSelector) and has a free address of the first family (of both,
//     for RequireDualStack). A Service that gains a family gets it from the
//     pool of the address it holds when that pool can give it. Within the
//     pool, the lowest free address.
//   - Sharing: with AnnotationAllowSharedIP, the Service first joins the
//     lowest address of the pool already held under the same key, if the
//     holders accept it (see ErrSharingRefused); else the lowest free.
//
// Dual-stack allocation is atomic: both addresses or none.
func (a *Allocator) Allocate(svc *v1.Service) ([]netip.Addr, error) {
	req, err := newRequest(svc)
	if err != nil {
		return nil, err
	}
	// The common case, a resync of an unchanged Service, needs no writer.
	row, err := serviceTxn(a.db.Txn(false), req.namespace, req.name)
	if err != nil {
		return nil, err
	}
	if row != nil && row.want == req.want && row.share.equal(req.share) {
		return slices.Clone(row.addrs), nil
	}

	txn := a.write()
	defer a.done(txn)
	addrs, err := allocateTxn(txn, &a.ix, req)
	if err != nil {
		return nil, err
	}
	a.commit(txn)
	return addrs, nil
}

func allocateTxn(txn *memdb.Txn, ix *indexes, req *request) ([]netip.Addr, error) {
	old, err := serviceTxn(txn, req.namespace, req.name)
	if err != nil {
		return nil, err
	}
	if old != nil && old.want == req.want {
		if old.share.equal(req.share) {
			return slices.Clone(old.addrs), nil
		}
		// The same addresses under new sharing terms (ports, policy,
		// key): the other holders must accept them.
		for _, addr := range old.addrs {
			if err := checkSharing(ix, req, addr); err != nil {
				return nil, err
			}
		}
		row := &serviceRow{req.namespace, req.name, old.addrs, req.want, req.share}
		if err := insertServiceTxn(txn, ix, old, row); err != nil {
			return nil, err
		}
		return slices.Clone(old.addrs), nil
	}

	addrs, err := planTxn(txn, ix, req, old)
	if err != nil {
		return nil, err
	}
	row := &serviceRow{req.namespace, req.name, addrs, req.want, req.share}
	if err := replaceServiceTxn(txn, ix, old, row); err != nil {
		return nil, err
	}
	return slices.Clone(addrs), nil
}

// checkSharing returns why the Service of req may not hold addr along with
// its other holders, nil if it may.
func checkSharing(ix *indexes, req *request, addr netip.Addr) error {
	for _, h := range ix.holders(addr) {
		if h.namespace == req.namespace && h.name == req.name {
			continue
		}
		if err := req.share.conflict(req.String(), addr, h.String(), h.share); err != nil {
			return err
		}
	}
	return nil
}

// planTxn chooses the addresses for a request; old is what the Service
// holds (nil: nothing). It only reads.
func planTxn(txn *memdb.Txn, ix *indexes, req *request, old *serviceRow) ([]netip.Addr, error) {
	w := &req.want
	if w.pool != "" {
		p, err := poolTxn(txn, w.pool)
		if err != nil {
			return nil, err
		}
		if p == nil {
			names, err := poolNamesTxn(txn)
			if err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("annotation %s of Service %s names pool %q, which does not exist (pools: %s): %w",
				AnnotationPool, req, w.pool, names, ErrUnknownPool)
		}
		if ok, why := p.allows(req.namespace, req.labels); !ok {
			return nil, fmt.Errorf("annotation %s of Service %s names pool %q, but %s: %w", AnnotationPool, req, w.pool, why, ErrPoolNotAllowed)
		}
	}

	if w.nips > 0 {
		for _, addr := range w.addrs() {
			if old != nil && slices.Contains(old.addrs, addr) {
				if err := checkSharing(ix, req, addr); err != nil {
					return nil, err
				}
				continue
			}
			if err := checkRequestedTxn(txn, ix, req, addr); err != nil {
				return nil, err
			}
		}
		return slices.Clone(w.addrs()), nil
	}

	wanted, required := w.dualStack()
	// Keep the held addresses that fit the new request.
	var kept []netip.Addr
	if old != nil {
		for _, addr := range old.addrs {
			switch {
			case w.nfams > 0 && !slices.Contains(w.families(), familyOf(addr)):
				continue
			case w.nfams == 0 && !wanted && len(kept) == 1:
				continue
			}
			if w.pool != "" {
				loc, err := locateTxn(txn, addr)
				if err != nil {
					return nil, err
				}
				if !loc.inPool() || loc.pool != w.pool {
					continue
				}
			}
			if err := checkSharing(ix, req, addr); err != nil {
				return nil, err
			}
			kept = append(kept, addr)
		}
	}
	has := func(f family) bool {
		return slices.ContainsFunc(kept, func(a netip.Addr) bool { return familyOf(a) == f })
	}

	// need: families the Service must get; opt: the ones it gets if the
	// pool can give them. poolDecides: spec.ipFamilies is empty and the
	// Service holds nothing, so the pool's families decide.
	var need, opt []family
	poolDecides := false
	switch {
	case w.nfams > 0:
		for i, f := range w.families() {
			switch {
			case has(f):
			case i == 0 || required:
				need = append(need, f)
			default:
				opt = append(opt, f)
			}
		}
	case len(kept) == 0:
		poolDecides = true
	case wanted && len(kept) == 1:
		if f := other(familyOf(kept[0])); required {
			need = append(need, f)
		} else {
			opt = append(opt, f)
		}
	}
	if !poolDecides && len(need) == 0 && len(opt) == 0 {
		return w.order(kept), nil
	}

	cands, err := candidatesTxn(txn, req, kept)
	if err != nil {
		return nil, err
	}
	var tried []string // why each candidate failed
	offered := false   // some candidate offers every needed family
	for _, p := range cands {
		pneed, popt := need, opt
		if poolDecides {
			pneed = p.families
			if required && len(pneed) < 2 {
				tried = append(tried, fmt.Sprintf("pool %q offers only %s", p.Name, pneed[0]))
				continue
			}
		}
		if missing := slices.DeleteFunc(slices.Clone(pneed), p.offers); len(missing) > 0 {
			tried = append(tried, fmt.Sprintf("pool %q offers no %s", p.Name, missing[0]))
			continue
		}
		offered = true

		var picks []netip.Addr
		full := false
		if poolDecides && !required {
			// One family, the pool's first that has an address; the
			// other too if the Service prefers dual-stack.
			for _, f := range p.families {
				addr, ok, err := pickTxn(txn, ix, req, p, f)
				if err != nil {
					return nil, err
				}
				if ok {
					picks = append(picks, addr)
					if wanted {
						popt = []family{other(f)}
					}
					break
				}
			}
			full = len(picks) == 0
		} else {
			for _, f := range pneed {
				addr, ok, err := pickTxn(txn, ix, req, p, f)
				if err != nil {
					return nil, err
				}
				if !ok {
					full = true
					break
				}
				picks = append(picks, addr)
			}
		}
		if full {
			tried = append(tried, fmt.Sprintf("pool %q is full", p.Name))
			continue
		}
		for _, f := range popt {
			if !p.offers(f) {
				continue
			}
			addr, ok, err := pickTxn(txn, ix, req, p, f)
			if err != nil {
				return nil, err
			}
			if ok {
				picks = append(picks, addr)
			}
		}
		return w.order(append(kept, picks...)), nil
	}

	why := strings.Join(tried, "; ")
	switch {
	case offered:
		return nil, fmt.Errorf("no free address for Service %s: %s: %w", req, why, ErrExhausted)
	case required:
		return nil, fmt.Errorf("no pool offers both IPv4 and IPv6 to RequireDualStack Service %s: %s: %w", req, why, ErrDualStackUnavailable)
	case len(need) > 0:
		return nil, fmt.Errorf("no pool offers %s to Service %s: %s: %w", need[0], req, why, ErrWrongFamily)
	default:
		return nil, fmt.Errorf("no pool offers addresses to Service %s: %s: %w", req, why, ErrWrongFamily)
	}
}

// candidatesTxn returns the pools a Service that names no address may get
// addresses from, in the order to try them.
func candidatesTxn(txn *memdb.Txn, req *request, kept []netip.Addr) ([]*poolRow, error) {
	if req.want.pool != "" {
		p, err := poolTxn(txn, req.want.pool)
		return []*poolRow{p}, err // planTxn checked it exists and serves the Service
	}
	pools, err := poolsTxn(txn)
	if err != nil {
		return nil, err
	}
	var cands []*poolRow
	var refused []string
	for _, p := range pools {
		if !p.AutoAssign {
			refused = append(refused, fmt.Sprintf("pool %q has autoAssign false and the Service names neither it nor an address of it", p.Name))
			continue
		}
		if ok, why := p.allows(req.namespace, req.labels); !ok {
			refused = append(refused, why)
			continue
		}
		cands = append(cands, p)
	}
	if len(cands) == 0 {
		if len(pools) == 0 {
			refused = append(refused, "no pools are configured")
		}
		return nil, fmt.Errorf("no pool serves Service %s: %s: %w", req, strings.Join(refused, "; "), ErrPoolNotAllowed)
	}
	// A Service that gains a family keeps to the pool of its address.
	for _, addr := range slices.Backward(kept) {
		loc, err := locateTxn(txn, addr)
		if err != nil {
			return nil, err
		}
		if i := slices.IndexFunc(cands, func(p *poolRow) bool { return p.Name == loc.pool }); loc.inPool() && i > 0 {
			p := cands[i]
			cands = slices.Insert(slices.Delete(cands, i, i+1), 0, p)
		}
	}
	return cands, nil
}

// pickTxn returns the address of family f a Service gets from pool p: the
// lowest one held under its sharing key whose holders accept it, else the
// lowest free one. ok is false when there is neither.
func pickTxn(txn *memdb.Txn, ix *indexes, req *request, p *poolRow, f family) (addr netip.Addr, ok bool, err error) {
	if req.share.key != "" {
		err := sharedAddrsTxn(txn, req.share.key, f, func(a netip.Addr) (bool, error) {
			loc, err := locateTxn(txn, a)
			if err != nil {
				return false, err
			}
			if !loc.inPool() || loc.pool != p.Name {
				return true, nil
			}
			if checkSharing(ix, req, a) != nil {
				return true, nil
			}
			addr, ok = a, true
			return false, nil
		})
		if ok || err != nil {
			return addr, ok, err
		}
	}
	s, ok := ix.lowest(p.Name, f)
	if !ok {
		return netip.Addr{}, false, nil
	}
	return newSlotMap(f, p.AvoidBuggyIPs).addr(s), true, nil
}

// checkRequestedTxn returns why the Service of req may not have the
// address it requests, nil if it may.
func checkRequestedTxn(txn *memdb.Txn, ix *indexes, req *request, addr netip.Addr) error {
	loc, err := locateTxn(txn, addr)
	if err != nil {
		return err
	}
	switch {
	case loc.pool == "":
		return fmt.Errorf("address %s requested by Service %s is in no pool: %w", addr, req, ErrOutsidePools)
	case loc.avoided:
		return fmt.Errorf("address %s requested by Service %s ends in .0 or .255, which pool %q avoids (avoidBuggyIPs): %w", addr, req, loc.pool, ErrOutsidePools)
	case req.want.pool != "" && loc.pool != req.want.pool:
		return fmt.Errorf("address %s requested by Service %s is in pool %q, not in pool %q that annotation %s names: %w",
			addr, req, loc.pool, req.want.pool, AnnotationPool, ErrOutsidePools)
	}
	p, err := poolTxn(txn, loc.pool)
	if err != nil {
		return err
	}
	if ok, why := p.allows(req.namespace, req.labels); !ok {
		return fmt.Errorf("address %s requested by Service %s: %s: %w", addr, req, why, ErrPoolNotAllowed)
	}
	return checkSharing(ix, req, addr)
}

// poolNamesTxn lists the pool names, for messages.
func poolNamesTxn(txn *memdb.Txn) (string, error) {
	pools, err := poolsTxn(txn)
	if err != nil {
		return "", err
	}
	names := make([]string, len(pools))
	for i, p := range pools {
		names[i] = p.Name
	}
	if len(names) == 0 {
		return "none", nil
	}
	return strings.Join(names, ", "), nil
}
