package ipam

import "errors"

// The errors Allocate, Restore, New and SetPools return wrap one of these
// sentinels, so that the caller can tell the causes apart with errors.Is and
// write one Event reason per cause. The wrapping message already names the
// details (the address, the pool, the Service holding an address, the
// colliding port), so it can go into the Event text unchanged.
var (
	// ErrInvalidRequest: a Request does not hold together: no name, an
	// unknown family policy or family, two addresses of one family, two
	// addresses for a single-stack Service, an address with a zone. The
	// caller that reads requests from Services wraps it too for a value it
	// cannot read (an annotation that is not an IP address), so that one
	// Event reason covers both.
	ErrInvalidRequest = errors.New("invalid request")

	// ErrUnknownPool: the pool annotation names a pool the configuration
	// does not have.
	ErrUnknownPool = errors.New("unknown pool")

	// ErrPoolNotAllowed: the pool exists but does not serve this Service:
	// its namespaces or serviceSelector exclude it, or, for a Service that
	// names neither a pool nor an address, no pool with autoAssign serves it.
	ErrPoolNotAllowed = errors.New("pool not allowed")

	// ErrOutsidePools: a requested address lies in no pool, not in the pool
	// the Service names, or is a .0/.255 address of a pool that avoids them.
	ErrOutsidePools = errors.New("address outside pools")

	// ErrWrongFamily: a requested address is of a family the Service does
	// not have, or no pool the Service may use offers the family it needs.
	ErrWrongFamily = errors.New("wrong address family")

	// ErrAddressTaken: a requested address is held by a Service that does not
	// share it with this one (no sharing key, or another key).
	ErrAddressTaken = errors.New("address taken")

	// ErrSharingRefused: the Services have the same sharing key but may not
	// share: a port and protocol in common, a different
	// externalTrafficPolicy, or (for Local) a different pod selector.
	ErrSharingRefused = errors.New("sharing refused")

	// ErrExhausted: every pool that could serve the Service is full.
	ErrExhausted = errors.New("pool exhausted")

	// ErrDualStackUnavailable: a RequireDualStack Service cannot get both
	// families: no pool it may use offers both, or its requested addresses
	// do not cover both.
	ErrDualStackUnavailable = errors.New("dual-stack unavailable")

	// ErrInvalidStatus: Restore found a shown address it cannot restore: not
	// a plain IP address, or a second address of one family.
	ErrInvalidStatus = errors.New("invalid load balancer status")

	// ErrInvalidPool: New or SetPools got pools that ParsePools would have
	// refused (duplicate names, bad or overlapping ranges).
	ErrInvalidPool = errors.New("invalid pool")
)
