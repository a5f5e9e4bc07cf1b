package ipam

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
)

// Request is what a Service asks of the allocator, in the allocator's own
// terms: the caller reads it from wherever its Services keep it (the
// provider reads a Kubernetes Service's spec and annotations), and the
// allocator checks that it holds together (see Allocate for the rules).
type Request struct {
	// Namespace and Name identify the Service.
	Namespace, Name string
	// Labels are the Service's own labels, which a pool's serviceSelector
	// matches.
	Labels map[string]string

	// Policy says whether the Service wants one family or both.
	Policy FamilyPolicy
	// Families are the Service's families, primary first: one or two
	// distinct ones. SingleStack uses the first only; RequireDualStack with
	// one adds the other. Empty: the chosen pool decides.
	Families []Family
	// IPs are the exact addresses asked for, at most one per family, each of
	// a family of Families (when given). Empty: the allocator chooses.
	IPs []netip.Addr
	// Pool names the pool to allocate from; "": the first pool with
	// autoAssign that serves the Service.
	Pool string

	// SharingKey lets Services with the same key hold the same address when
	// they use no Port in common and have the same traffic policy (and, for
	// TrafficPolicyLocal, the same PodSelector). "": the Service does not
	// share.
	SharingKey string
	// Ports are the ports and protocols the Service uses; the order does not
	// matter.
	Ports []Port
	// TrafficPolicyLocal: only nodes with a ready endpoint of the Service
	// carry its traffic (Kubernetes' externalTrafficPolicy Local).
	TrafficPolicyLocal bool
	// PodSelector selects the Service's pods; it matters for sharing with
	// TrafficPolicyLocal only: sharers must select the same pods, or one of
	// them would be announced from nodes without its endpoints.
	PodSelector map[string]string

	// Shown are the addresses that clients see for the Service now (the
	// Service's status). An address the Service holds and shows stays held
	// by it after the request changes, until it is no longer shown (see
	// Settle): clients still use it, so no other Service may get it.
	Shown []netip.Addr

	// Source names, for error messages, where the caller read some fields,
	// so that an error tells the user what to change.
	Source Source
}

// Source names where a Request's fields came from, in words an error
// message can quote: "annotation example.io/pool", "spec.loadBalancerIP".
// An empty field reads as the Request field's name.
type Source struct {
	IPs, Pool, SharingKey string
}

func (s Source) ips() string        { return cmp.Or(s.IPs, "Request.IPs") }
func (s Source) pool() string       { return cmp.Or(s.Pool, "Request.Pool") }
func (s Source) sharingKey() string { return cmp.Or(s.SharingKey, "Request.SharingKey") }

// FamilyPolicy says how many families a Service wants.
type FamilyPolicy uint8

// The family policies, as Kubernetes names them.
const (
	// SingleStack: one address, of the first family.
	SingleStack FamilyPolicy = iota
	// PreferDualStack: both families when the pool offers both, else one.
	PreferDualStack
	// RequireDualStack: both families, or ErrDualStackUnavailable.
	RequireDualStack
)

func (p FamilyPolicy) String() string {
	switch p {
	case SingleStack:
		return "SingleStack"
	case PreferDualStack:
		return "PreferDualStack"
	case RequireDualStack:
		return "RequireDualStack"
	}
	return fmt.Sprintf("FamilyPolicy(%d)", uint8(p))
}

// Port is a port and protocol a Service uses: two sharers may not use the
// same one.
type Port struct {
	Number   int32
	Protocol string // "TCP", "UDP", "SCTP"
}

func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Number, p.Protocol) }

func comparePorts(a, b Port) int {
	return cmp.Or(cmp.Compare(a.Number, b.Number), cmp.Compare(a.Protocol, b.Protocol))
}

// want is the address part of a request: what a Service asks for. A
// Service that holds addresses and asks for the same thing again gets them
// back unchanged; if it asks for something else, the allocator plans anew.
// It is comparable with ==.
type want struct {
	// valid is false for an assignment restored from a status that does not
	// match what the Service asks for: it never equals a request, so the
	// next Allocate plans anew (keeping what still fits).
	valid  bool
	policy FamilyPolicy
	// fams are the requested families, primary first, cut to one for
	// SingleStack; nfams is 0 when none were given and the pool decides.
	fams  [2]Family
	nfams int
	// ips are the requested addresses, in the order of fams.
	ips  [2]netip.Addr
	nips int
	pool string
}

func (w want) String() string {
	if !w.valid {
		return "{restored, unmatched}"
	}
	return fmt.Sprintf("{%s %v ips=%v pool=%q}", w.policy, w.fams[:w.nfams], w.ips[:w.nips], w.pool)
}

func (w *want) families() []Family  { return w.fams[:w.nfams] }
func (w *want) addrs() []netip.Addr { return w.ips[:w.nips] }

// order sorts addrs (one per family) in the Service's family order, the
// primary family first, and returns them.
func (w *want) order(addrs []netip.Addr) []netip.Addr {
	if w.nfams > 0 {
		slices.SortStableFunc(addrs, func(a, b netip.Addr) int {
			return cmp.Compare(slices.Index(w.families(), familyOf(a)), slices.Index(w.families(), familyOf(b)))
		})
	}
	return addrs
}

// dualStack reports whether the Service wants both families, and whether
// it must have them.
func (w *want) dualStack() (wanted, required bool) {
	return w.policy != SingleStack, w.policy == RequireDualStack
}

// sharing is the part of a request that decides whom a Service may share an
// address with.
type sharing struct {
	key   string // "" does not share
	ports []Port // sorted, without repeats
	local bool   // TrafficPolicyLocal
	// selector is the pod selector in canonical form, for local only.
	selector string
}

func newSharing(r *Request) sharing {
	s := sharing{key: r.SharingKey, local: r.TrafficPolicyLocal}
	s.ports = slices.Clone(r.Ports)
	slices.SortFunc(s.ports, comparePorts)
	s.ports = slices.Compact(s.ports)
	if s.local {
		s.selector = labels.Set(r.PodSelector).String()
	}
	return s
}

func (s sharing) equal(o sharing) bool {
	return s.key == o.key && s.local == o.local && s.selector == o.selector && slices.Equal(s.ports, o.ports)
}

func (s sharing) policy() string {
	if s.local {
		return "Local"
	}
	return "Cluster"
}

// conflict returns why a Service with sharing s (named svc, its sharing key
// read from keySource) may not hold address a alongside holder, which holds
// it with sharing h; nil if it may.
func (s sharing) conflict(svc, keySource string, a netip.Addr, holder string, h sharing) error {
	switch {
	case h.key == "":
		return fmt.Errorf("address %s is held by Service %s, which does not share it (no %s): %w",
			a, holder, keySource, ErrAddressTaken)
	case s.key == "":
		return fmt.Errorf("address %s is held by Service %s, which shares it only with Services with %s=%q: %w",
			a, holder, keySource, h.key, ErrAddressTaken)
	case s.key != h.key:
		return fmt.Errorf("address %s is held by Service %s with sharing key %q, not %q: %w",
			a, holder, h.key, s.key, ErrAddressTaken)
	case s.local != h.local:
		return fmt.Errorf("address %s is shared by Service %s with externalTrafficPolicy %s, but Service %s has %s; sharers need the same policy: %w",
			a, holder, h.policy(), svc, s.policy(), ErrSharingRefused)
	case s.local && s.selector != h.selector:
		return fmt.Errorf("address %s is shared by Service %s, whose pod selector %q differs from %q of Service %s; with externalTrafficPolicy Local sharers need the same selector: %w",
			a, holder, h.selector, s.selector, svc, ErrSharingRefused)
	}
	for _, p := range s.ports {
		if _, found := slices.BinarySearchFunc(h.ports, p, comparePorts); found {
			return fmt.Errorf("address %s is shared by Service %s, which uses port %s too: %w", a, holder, p, ErrSharingRefused)
		}
	}
	return nil
}

// request is a Request checked and put in the allocator's form.
type request struct {
	namespace, name string
	labels          labels.Set
	want            want
	share           sharing
	shown           []netip.Addr
	src             Source
}

func (r *request) String() string { return r.namespace + "/" + r.name }

// conflict returns why the Service of r may not hold a alongside holder h.
func (r *request) conflict(a netip.Addr, h *serviceRow) error {
	return r.share.conflict(r.String(), r.src.sharingKey(), a, h.String(), h.share)
}

// newRequest checks a Request and puts it in the allocator's form. Its
// errors say which field is wrong and how; a request that does not hold
// together wraps ErrInvalidRequest, ErrWrongFamily or
// ErrDualStackUnavailable.
func newRequest(in *Request) (*request, error) {
	r := &request{
		namespace: in.Namespace, name: in.Name, labels: labels.Set(in.Labels),
		share: newSharing(in), shown: in.Shown, src: in.Source,
	}
	if in.Name == "" {
		return nil, fmt.Errorf("a request needs the Service's name (namespace %q): %w", in.Namespace, ErrInvalidRequest)
	}
	w := &r.want
	w.valid = true
	w.policy = in.Policy
	if w.policy > RequireDualStack {
		return nil, fmt.Errorf("family policy %s of Service %s is not SingleStack, PreferDualStack or RequireDualStack: %w", w.policy, r, ErrInvalidRequest)
	}
	if len(in.Families) > 2 {
		return nil, fmt.Errorf("families %v of Service %s are not one or two distinct families of IPv4, IPv6: %w", in.Families, r, ErrInvalidRequest)
	}
	for _, fam := range in.Families {
		if !fam.valid() || slices.Contains(w.families(), fam) {
			return nil, fmt.Errorf("families %v of Service %s are not one or two distinct families of IPv4, IPv6: %w", in.Families, r, ErrInvalidRequest)
		}
		w.fams[w.nfams] = fam
		w.nfams++
	}
	if w.policy == SingleStack && w.nfams > 1 {
		w.nfams = 1
	}
	if w.policy == RequireDualStack && w.nfams == 1 {
		w.fams[1] = w.fams[0].other()
		w.nfams = 2
	}
	if err := r.setIPs(in.IPs); err != nil {
		return nil, err
	}
	w.pool = in.Pool
	return r, nil
}

// setIPs checks the requested addresses against the families and puts them
// in r.want, in family order.
func (r *request) setIPs(ips []netip.Addr) error {
	w, src := &r.want, r.src.ips()
	if len(ips) > 2 {
		return fmt.Errorf("%s of Service %s requests %d addresses (%v); at most one per family: %w", src, r, len(ips), ips, ErrInvalidRequest)
	}
	for i, a := range ips {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			return fmt.Errorf("%s of Service %s: %q is not a plain IPv4 or IPv6 address: %w", src, r, a, ErrInvalidRequest)
		}
		if i == 1 && familyOf(a) == familyOf(ips[0]) {
			return fmt.Errorf("%s of Service %s requests two %s addresses (%s, %s); at most one per family: %w", src, r, familyOf(a), ips[0], a, ErrInvalidRequest)
		}
	}
	if len(ips) == 0 {
		return nil
	}
	_, required := w.dualStack()
	if w.nfams == 0 {
		if w.policy == SingleStack && len(ips) > 1 {
			return fmt.Errorf("%s of Service %s requests %d addresses, but the Service is single-stack: %w", src, r, len(ips), ErrInvalidRequest)
		}
	} else {
		for _, a := range ips {
			if !slices.Contains(w.families(), familyOf(a)) {
				return fmt.Errorf("%s of Service %s requests %s address %s, but the Service's families are %v (%s): %w",
					src, r, familyOf(a), a, w.families(), w.policy, ErrWrongFamily)
			}
		}
	}
	if required && len(ips) < 2 {
		return fmt.Errorf("%s of Service %s requests only %s, but the Service is RequireDualStack; request one address per family: %w", src, r, ips[0], ErrDualStackUnavailable)
	}
	w.nips = copy(w.ips[:], ips)
	w.order(w.ips[:w.nips])
	return nil
}
