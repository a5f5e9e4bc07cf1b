// Package ipam allocates load-balancer addresses from pools of IPv4 and
// IPv6 addresses, and keeps every address a Service holds across restarts.
// It knows Services by name and by what they ask (Request), in its own
// terms: reading a Kubernetes Service is the provider's business.
//
// Users put Service addresses in DNS records and firewall rules, so the
// allocator's promises are about never surprising them:
//
//   - An address is never held by two Services that may not share it.
//   - A Service keeps its addresses for as long as it asks for the same
//     thing: not when another Service goes, not when the pools change (an
//     address left outside every pool is kept and reported stale), not
//     when the controller restarts (Restore rebuilds the store from the
//     Services' status before the first Allocate). An address its status
//     shows stays its own after its request changed, until the status no
//     longer shows it (pending.go).
//   - Every call is atomic: a dual-stack Service gets both addresses or
//     none, and a call that fails changes nothing.
//   - Finding a free address never walks the pool: the free addresses are
//     kept as intervals in a treap per pool and family, and the lowest free
//     one is a single ordered lookup, so an IPv6 /64 costs what a /28 does.
//
// The store is a go-memdb database in memory, one table per file
// (table_*.go), built by schema factories; each exported method opens one
// transaction and hands it to unexported …Txn functions that compose.
// Beside it, the free lists and the holders of each address are mutable
// indexes derived from the services table (indexes.go, freelist.go,
// treap.go), changed under the Allocator's write lock and undone with the
// transaction when a call fails (undo.go).
//
// Errors wrap the sentinels of errors.go; see docs/ipam.md for the design,
// the request rules and the benchmarks.
package ipam
