package ipam

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"go4.org/netipx"
)

// PoolConfig is one entry of the cloud config's `pools:` list, as written by
// the operator:
//
//	pools:
//	- name: public
//	  addresses: [203.0.113.0/26, 203.0.113.100-203.0.113.120, 2001:db8:100::/64]
//	  autoAssign: true
//	  avoidBuggyIPs: false
//	  namespaces: []
//	  serviceSelector: {}
type PoolConfig struct {
	// Name identifies the pool in the pool annotation and in Events; a DNS
	// label, unique among the pools.
	Name string `json:"name"`
	// Addresses are CIDRs ("203.0.113.0/26", "2001:db8:100::/64") and
	// inclusive ranges ("203.0.113.100-203.0.113.120"), of either family.
	// No address may be in two entries, of this pool or any other.
	Addresses []string `json:"addresses"`
	// AutoAssign: when false, the pool only serves Services that name it
	// (pool annotation) or one of its addresses. Default true.
	AutoAssign *bool `json:"autoAssign,omitempty"`
	// AvoidBuggyIPs: never hand out IPv4 addresses ending in .0 or .255.
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`
	// Namespaces the pool serves; empty: all.
	Namespaces []string `json:"namespaces,omitempty"`
	// ServiceSelector selects, by the Service's own labels, the Services the
	// pool serves; empty or absent: all.
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
}

// Pool is a validated pool, as the Allocator uses it.
type Pool struct {
	Name string
	// Ranges in configuration order; the family of the first one is the
	// pool's first family (see Allocate).
	Ranges        []netipx.IPRange
	AutoAssign    bool
	AvoidBuggyIPs bool
	// Namespaces the pool serves; empty: all.
	Namespaces []string
	// Selector on the Service's labels; nil: all.
	Selector labels.Selector
}

// allows reports whether the pool serves a Service in namespace ns with
// labels lbls, and if not, why.
func (p *Pool) allows(ns string, lbls labels.Set) (ok bool, why string) {
	if len(p.Namespaces) > 0 && !slices.Contains(p.Namespaces, ns) {
		return false, fmt.Sprintf("pool %q serves only namespaces %s", p.Name, strings.Join(p.Namespaces, ", "))
	}
	if p.Selector != nil && !p.Selector.Matches(lbls) {
		return false, fmt.Sprintf("pool %q serves only Services matching %q", p.Name, p.Selector.String())
	}
	return true, ""
}

// ParsePools validates the pools of the cloud config and returns them in the
// form the Allocator takes. It reports every problem it finds, each with its
// field path under path (pools[1].addresses[0]), the value, and what would be
// valid; the pools are returned only when there is none.
func ParsePools(cfgs []PoolConfig, path *field.Path) ([]Pool, field.ErrorList) {
	var errs field.ErrorList
	pools := make([]Pool, len(cfgs))
	names := make(map[string]bool, len(cfgs))
	var refs []rangeRef
	for i, cfg := range cfgs {
		pp := path.Index(i)
		p := &pools[i]
		p.Name = cfg.Name
		switch {
		case cfg.Name == "":
			errs = append(errs, field.Required(pp.Child("name"), "every pool needs a name, a DNS label such as \"public\""))
		case names[cfg.Name]:
			errs = append(errs, field.Duplicate(pp.Child("name"), cfg.Name))
		default:
			for _, msg := range validation.IsDNS1123Label(cfg.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), cfg.Name, msg))
			}
		}
		names[cfg.Name] = true

		if len(cfg.Addresses) == 0 {
			errs = append(errs, field.Required(pp.Child("addresses"),
				"list CIDRs (203.0.113.0/26) or ranges (203.0.113.100-203.0.113.120)"))
		}
		for j, s := range cfg.Addresses {
			r, problem := parseRange(s)
			if problem != "" {
				errs = append(errs, field.Invalid(pp.Child("addresses").Index(j), s, problem))
				continue
			}
			p.Ranges = append(p.Ranges, r)
			refs = append(refs, rangeRef{seq: len(refs), pool: cfg.Name, path: pp.Child("addresses").Index(j).String(), raw: s, r: r})
		}

		p.AutoAssign = cfg.AutoAssign == nil || *cfg.AutoAssign
		p.AvoidBuggyIPs = cfg.AvoidBuggyIPs

		seen := make(map[string]bool, len(cfg.Namespaces))
		for j, ns := range cfg.Namespaces {
			np := pp.Child("namespaces").Index(j)
			if seen[ns] {
				errs = append(errs, field.Duplicate(np, ns))
				continue
			}
			seen[ns] = true
			for _, msg := range validation.IsDNS1123Label(ns) {
				errs = append(errs, field.Invalid(np, ns, "not a namespace name: "+msg))
			}
		}
		if len(cfg.Namespaces) > 0 {
			p.Namespaces = slices.Clone(cfg.Namespaces)
		}

		if cfg.ServiceSelector != nil {
			sp := pp.Child("serviceSelector")
			serrs := metav1validation.ValidateLabelSelector(cfg.ServiceSelector, metav1validation.LabelSelectorValidationOptions{}, sp)
			errs = append(errs, serrs...)
			if len(serrs) == 0 {
				sel, err := metav1.LabelSelectorAsSelector(cfg.ServiceSelector)
				if err != nil {
					errs = append(errs, field.Invalid(sp, cfg.ServiceSelector.String(), err.Error()))
				} else if !sel.Empty() {
					p.Selector = sel
				}
			}
		}
	}
	for _, o := range findOverlaps(refs) {
		errs = append(errs, field.Invalid(field.NewPath(o.b.path), o.b.raw,
			fmt.Sprintf("%s overlaps %s (%s) of pool %q (%s); an address may belong to one pool only", o.b.r, o.a.raw, o.a.r, o.a.pool, o.a.path)))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return pools, nil
}

// parseRange parses a CIDR or an "a-b" range; problem says what is wrong and
// what would be valid.
func parseRange(s string) (r netipx.IPRange, problem string) {
	s = strings.TrimSpace(s)
	if from, to, ok := strings.Cut(s, "-"); ok {
		a, err := netip.ParseAddr(strings.TrimSpace(from))
		if err != nil {
			return r, "range start is not an IP address; want a range such as 203.0.113.100-203.0.113.120"
		}
		b, err := netip.ParseAddr(strings.TrimSpace(to))
		if err != nil {
			return r, "range end is not an IP address; want a range such as 203.0.113.100-203.0.113.120"
		}
		if p := addrProblem(a); p != "" {
			return r, "range start " + p
		}
		if p := addrProblem(b); p != "" {
			return r, "range end " + p
		}
		if a.Is4() != b.Is4() {
			return r, "range mixes IPv4 and IPv6; list each family as its own range"
		}
		if b.Less(a) {
			return r, fmt.Sprintf("range starts after it ends; did you mean %s-%s?", b, a)
		}
		r = netipx.IPRangeFrom(a, b)
		if problem := unusableProblem(r); problem != "" {
			return r, problem
		}
		return r, ""
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return r, fmt.Sprintf("a single address needs a prefix length: %s/%d", a, a.BitLen())
		}
		return r, "not a CIDR (203.0.113.0/26, 2001:db8:100::/64) or a range (203.0.113.100-203.0.113.120)"
	}
	if pr := addrProblem(p.Addr()); pr != "" {
		return r, "prefix " + pr
	}
	if p.Masked() != p {
		return r, fmt.Sprintf("host bits set; did you mean %s?", p.Masked())
	}
	r = netipx.RangeOfPrefix(p)
	if problem := unusableProblem(r); problem != "" {
		return r, problem
	}
	return r, ""
}

// ParseRange parses one entry of a pool's addresses: a CIDR
// ("203.0.113.0/26") or an inclusive range ("203.0.113.100-203.0.113.120").
// The error says what is wrong and what would be valid. Checks that span
// entries (overlaps) are ParsePools'.
func ParseRange(s string) (netipx.IPRange, error) {
	r, problem := parseRange(s)
	if problem != "" {
		return netipx.IPRange{}, errors.New(problem)
	}
	return r, nil
}

// unusable are the blocks a pool may not touch: their addresses cannot be a
// Service's destination on the routers and nodes.
var unusable = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network" (RFC 1122), never a destination`},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the limited broadcast address"},
	{netip.MustParsePrefix("::/128"), "the unspecified address"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// unusableProblem refuses a range that is a whole address family or touches
// a block whose addresses cannot be announced to a Service: pools are
// global unicast addresses the routers forward to the nodes.
func unusableProblem(r netipx.IPRange) string {
	const valid = "pool addresses must be global unicast addresses that the routers forward to the nodes"
	switch r {
	case netipx.RangeOfPrefix(netip.MustParsePrefix("0.0.0.0/0")):
		return "is every IPv4 address; " + valid
	case netipx.RangeOfPrefix(netip.MustParsePrefix("::/0")):
		return "is every IPv6 address; " + valid
	}
	for _, u := range unusable {
		if u.prefix.Addr().Is4() != r.From().Is4() {
			continue
		}
		if netipx.RangeOfPrefix(u.prefix).Overlaps(r) {
			return fmt.Sprintf("includes %s (%s); %s", u.prefix, u.what, valid)
		}
	}
	return ""
}

// addrProblem rejects the addresses whose family would be ambiguous.
func addrProblem(a netip.Addr) string {
	switch {
	case a.Zone() != "":
		return "has a zone; pools are global addresses"
	case a.Is4In6():
		return "is an IPv4-mapped IPv6 address; write it as IPv4"
	}
	return ""
}

// rangeRef is a range with where it came from, for overlap messages.
type rangeRef struct {
	seq  int // position in the configuration
	pool string
	path string // pools[0].addresses[1], or the pool's range index
	raw  string // as written
	r    netipx.IPRange
}

type overlap struct{ a, b rangeRef }

// findOverlaps returns pairs of overlapping ranges, the one configured
// first as a: every range that overlaps another is in at least one pair.
func findOverlaps(refs []rangeRef) []overlap {
	sorted := slices.Clone(refs)
	slices.SortStableFunc(sorted, func(x, y rangeRef) int {
		return cmp.Or(x.r.From().Compare(y.r.From()), x.r.To().Compare(y.r.To()))
	})
	var out []overlap
	var widest *rangeRef // of the ranges so far, the one reaching highest
	for i := range sorted {
		cur := &sorted[i]
		if widest != nil && widest.r.From().Is4() == cur.r.From().Is4() && cur.r.From().Compare(widest.r.To()) <= 0 {
			o := overlap{*widest, *cur}
			if o.b.seq < o.a.seq {
				o.a, o.b = o.b, o.a
			}
			out = append(out, o)
		}
		if widest == nil || widest.r.From().Is4() != cur.r.From().Is4() || widest.r.To().Less(cur.r.To()) {
			widest = cur
		}
	}
	return out
}

// validatePools checks pools built without ParsePools.
func validatePools(pools []Pool) error {
	var errs []error
	names := make(map[string]bool, len(pools))
	var refs []rangeRef
	for i, p := range pools {
		switch {
		case p.Name == "":
			errs = append(errs, fmt.Errorf("pool %d has no name: %w", i, ErrInvalidPool))
		case names[p.Name]:
			errs = append(errs, fmt.Errorf("pool name %q used twice: %w", p.Name, ErrInvalidPool))
		case len(validation.IsDNS1123Label(p.Name)) > 0:
			errs = append(errs, fmt.Errorf("pool name %q is not a DNS label: %w", p.Name, ErrInvalidPool))
		}
		names[p.Name] = true
		if len(p.Ranges) == 0 {
			errs = append(errs, fmt.Errorf("pool %q has no addresses: %w", p.Name, ErrInvalidPool))
		}
		for j, r := range p.Ranges {
			if !r.IsValid() || addrProblem(r.From()) != "" || addrProblem(r.To()) != "" {
				errs = append(errs, fmt.Errorf("pool %q range %d (%s) is not a valid range: %w", p.Name, j, r, ErrInvalidPool))
				continue
			}
			if problem := unusableProblem(r); problem != "" {
				errs = append(errs, fmt.Errorf("pool %q range %d (%s) %s: %w", p.Name, j, r, problem, ErrInvalidPool))
				continue
			}
			refs = append(refs, rangeRef{seq: len(refs), pool: p.Name, path: fmt.Sprintf("range %d", j), raw: r.String(), r: r})
		}
	}
	for _, o := range findOverlaps(refs) {
		errs = append(errs, fmt.Errorf("range %s of pool %q overlaps %s of pool %q: %w", o.b.r, o.b.pool, o.a.r, o.a.pool, ErrInvalidPool))
	}
	return errors.Join(errs...)
}
