package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	memdb "github.com/hashicorp/go-memdb"
)

// Allocate returns the addresses of a Service, allocating them if needed.
//
// It is idempotent: a Service that asks again for what it asked before gets
// the addresses it holds, whatever has happened since (a pool removed, the
// Service's namespace no longer allowed): a held address is never taken
// away. A Service whose request changed (requested addresses, pool,
// families) gets addresses for the new request, keeping each held address
// that still fits it; the held addresses it no longer gets but req.Shown
// shows stay held by it, pending, until they are no longer shown (see
// Settle). On error the Service keeps what it had (see Assigned) and
// nothing changes.
//
// The request (see Request):
//
//   - Families: Families and Policy. SingleStack gets the first family;
//     PreferDualStack both when the pool offers both, else the first;
//     RequireDualStack both or ErrDualStackUnavailable. With Families empty
//     the chosen pool decides, its first family first.
//   - Addresses: IPs. The Service gets exactly these (one per family), each
//     in a pool that serves it (autoAssign does not matter) and free or
//     shareable.
//   - Pool: Pool, else the first pool in configuration order that has
//     autoAssign, serves the Service (namespaces, serviceSelector) and has
//     a free address of the first family (of both, for RequireDualStack). A
//     Service that gains a family gets it from the pool of the address it
//     holds when that pool can give it. Within the pool, the lowest free
//     address.
//   - Sharing: with a SharingKey, the Service first joins the lowest
//     address of the pool already held under the same key, if the holders
//     accept it (see ErrSharingRefused); else the lowest free.
//
// Dual-stack allocation is atomic: both addresses or none.
func (a *Allocator) Allocate(in Request) ([]netip.Addr, error) {
	req, err := newRequest(&in)
	if err != nil {
		return nil, err
	}
	// The common case, a resync of an unchanged Service, needs no writer.
	row, err := serviceTxn(a.db.Txn(false), req.namespace, req.name)
	if err != nil {
		return nil, err
	}
	if row != nil && row.want == req.want && row.share.equal(req.share) && allShown(row.pending, req.shown) {
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
	if old != nil && old.want == req.want && old.share.equal(req.share) && allShown(old.pending, req.shown) {
		return slices.Clone(old.addrs), nil // another call got here first
	}
	var addrs []netip.Addr
	if old != nil && old.want == req.want {
		// The same addresses, under new sharing terms (ports, policy,
		// key: the other holders must accept them) or with fewer shown.
		for _, addr := range old.addrs {
			if err := checkSharing(ix, req, addr); err != nil {
				return nil, err
			}
		}
		addrs = old.addrs
	} else if addrs, err = planTxn(txn, ix, req, old); err != nil {
		return nil, err
	}
	row := &serviceRow{req.namespace, req.name, addrs, pendingAfter(ix, req, old, addrs), req.want, req.share}
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
		if err := req.conflict(addr, h); err != nil {
			return err
		}
	}
	return nil
}

// planTxn chooses the addresses for a request; old is what the Service
// holds (nil: nothing). It only reads.
func planTxn(txn *memdb.Txn, ix *indexes, req *request, old *serviceRow) ([]netip.Addr, error) {
	w := &req.want
	if err := checkNamedPoolTxn(txn, req); err != nil {
		return nil, err
	}
	if w.nips > 0 {
		return checkRequestedAddrsTxn(txn, ix, req, old)
	}
	kept, err := keptTxn(txn, ix, req, old)
	if err != nil {
		return nil, err
	}
	fams := familiesToGet(w, kept)
	if !fams.poolDecides && len(fams.need) == 0 && len(fams.opt) == 0 {
		return w.order(kept), nil
	}
	cands, err := candidatesTxn(txn, req, kept)
	if err != nil {
		return nil, err
	}
	var tried []refusal // why each candidate failed
	for _, p := range cands {
		picks, no, err := pickFromPoolTxn(txn, ix, req, p, fams)
		switch {
		case err != nil:
			return nil, err
		case no.why != "":
			tried = append(tried, no)
			continue
		}
		return w.order(append(kept, picks...)), nil
	}
	return nil, noAddressError(req, fams, tried)
}

// checkNamedPoolTxn returns why the pool a request names may not serve it:
// it does not exist, or excludes the Service. nil if it may, or if the
// request names none.
func checkNamedPoolTxn(txn *memdb.Txn, req *request) error {
	w := &req.want
	if w.pool == "" {
		return nil
	}
	p, err := poolTxn(txn, w.pool)
	if err != nil {
		return err
	}
	if p == nil {
		names, err := poolNamesTxn(txn)
		if err != nil {
			return err
		}
		return fmt.Errorf("%s of Service %s names pool %q, which does not exist (pools: %s): %w",
			req.src.pool(), req, w.pool, names, ErrUnknownPool)
	}
	if ok, why := p.allows(req.namespace, req.labels); !ok {
		return fmt.Errorf("%s of Service %s names pool %q, but %s: %w", req.src.pool(), req, w.pool, why, ErrPoolNotAllowed)
	}
	return nil
}

// checkRequestedAddrsTxn returns the addresses a request names, if the
// Service may have them all.
func checkRequestedAddrsTxn(txn *memdb.Txn, ix *indexes, req *request, old *serviceRow) ([]netip.Addr, error) {
	for _, addr := range req.want.addrs() {
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
	return slices.Clone(req.want.addrs()), nil
}

// keptTxn returns the addresses of old (nil: none) that fit the new
// request: of a family it asks for (only one when it is single-stack and
// the pool decides), in the pool it names, sharable on its terms.
func keptTxn(txn *memdb.Txn, ix *indexes, req *request, old *serviceRow) ([]netip.Addr, error) {
	if old == nil {
		return nil, nil
	}
	w := &req.want
	wanted, _ := w.dualStack()
	var kept []netip.Addr
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
	return kept, nil
}

// familyNeeds are the families a Service still has to get.
type familyNeeds struct {
	// need: the families the Service must get; opt: the ones it gets if
	// the pool can give them.
	need, opt []Family
	// poolDecides: the request names no family and the Service keeps
	// nothing, so the pool's families decide.
	poolDecides bool
	// wanted, required: the Service wants both families, must have both.
	wanted, required bool
}

// familiesToGet returns the families a Service that asks w and keeps kept
// still has to get.
func familiesToGet(w *want, kept []netip.Addr) familyNeeds {
	var n familyNeeds
	n.wanted, n.required = w.dualStack()
	has := func(f Family) bool {
		return slices.ContainsFunc(kept, func(a netip.Addr) bool { return familyOf(a) == f })
	}
	switch {
	case w.nfams > 0:
		for i, f := range w.families() {
			switch {
			case has(f):
			case i == 0 || n.required:
				n.need = append(n.need, f)
			default:
				n.opt = append(n.opt, f)
			}
		}
	case len(kept) == 0:
		n.poolDecides = true
	case n.wanted && len(kept) == 1:
		if f := familyOf(kept[0]).other(); n.required {
			n.need = append(n.need, f)
		} else {
			n.opt = append(n.opt, f)
		}
	}
	return n
}

// refusal says why a pool cannot serve a request; the zero value: it can.
type refusal struct {
	why string
	// full: the pool offers the families needed but has no free address.
	full bool
}

// pickFromPoolTxn picks from pool p the addresses of the families a Service
// still has to get; no says, when p cannot give them, why not.
func pickFromPoolTxn(txn *memdb.Txn, ix *indexes, req *request, p *poolRow, fams familyNeeds) (picks []netip.Addr, no refusal, err error) {
	need, opt := fams.need, fams.opt
	if fams.poolDecides {
		need = p.families
		if fams.required && len(need) < 2 {
			return nil, refusal{why: fmt.Sprintf("pool %q offers only %s", p.Name, need[0])}, nil
		}
	}
	if missing := slices.DeleteFunc(slices.Clone(need), p.offers); len(missing) > 0 {
		return nil, refusal{why: fmt.Sprintf("pool %q offers no %s", p.Name, missing[0])}, nil
	}
	if fams.poolDecides && !fams.required {
		// One family, the pool's first that has an address; the other too
		// if the Service prefers dual-stack.
		need = nil
		for _, f := range p.families {
			addr, ok, err := pickTxn(txn, ix, req, p, f)
			if err != nil {
				return nil, refusal{}, err
			}
			if ok {
				picks = append(picks, addr)
				if fams.wanted {
					opt = []Family{f.other()}
				}
				break
			}
		}
		if len(picks) == 0 {
			return nil, fullRefusal(p), nil
		}
	}
	for _, f := range need {
		addr, ok, err := pickTxn(txn, ix, req, p, f)
		if err != nil {
			return nil, refusal{}, err
		}
		if !ok {
			return nil, fullRefusal(p), nil
		}
		picks = append(picks, addr)
	}
	for _, f := range opt {
		if !p.offers(f) {
			continue
		}
		addr, ok, err := pickTxn(txn, ix, req, p, f)
		if err != nil {
			return nil, refusal{}, err
		}
		if ok {
			picks = append(picks, addr)
		}
	}
	return picks, refusal{}, nil
}

func fullRefusal(p *poolRow) refusal {
	return refusal{fmt.Sprintf("pool %q is full", p.Name), true}
}

// noAddressError says why no candidate pool could serve a request; tried
// holds each candidate's reason.
func noAddressError(req *request, fams familyNeeds, tried []refusal) error {
	whys := make([]string, len(tried))
	offered := false // some candidate offers every needed family
	for i, r := range tried {
		whys[i] = r.why
		offered = offered || r.full
	}
	why := strings.Join(whys, "; ")
	switch {
	case offered:
		return fmt.Errorf("no free address for Service %s: %s: %w", req, why, ErrExhausted)
	case fams.required:
		return fmt.Errorf("no pool offers both IPv4 and IPv6 to RequireDualStack Service %s: %s: %w", req, why, ErrDualStackUnavailable)
	case len(fams.need) > 0:
		return fmt.Errorf("no pool offers %s to Service %s: %s: %w", fams.need[0], req, why, ErrWrongFamily)
	default:
		return fmt.Errorf("no pool offers addresses to Service %s: %s: %w", req, why, ErrWrongFamily)
	}
}

// candidatesTxn returns the pools a Service that names no address may get
// addresses from, in the order to try them.
func candidatesTxn(txn *memdb.Txn, req *request, kept []netip.Addr) ([]*poolRow, error) {
	if req.want.pool != "" {
		p, err := poolTxn(txn, req.want.pool)
		return []*poolRow{p}, err // checkNamedPoolTxn checked it exists and serves the Service
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
func pickTxn(txn *memdb.Txn, ix *indexes, req *request, p *poolRow, f Family) (addr netip.Addr, ok bool, err error) {
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
		return fmt.Errorf("address %s requested by Service %s is in pool %q, not in pool %q that %s names: %w",
			addr, req, loc.pool, req.want.pool, req.src.pool(), ErrOutsidePools)
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
