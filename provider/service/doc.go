// Package service holds the contract between a Kubernetes Service and this
// cloud provider, in one place: the annotations a Service sets and how they
// are read, which addresses its status shows, and which Services are this
// provider's to serve.
//
// The rest of the provider asks this package rather than reading a
// Service's fields itself, so that a rule about Services changes here once:
//
//   - request.go: the allocation annotations and AllocationRequest, which
//     turns a Service into the allocator's own ipam.Request;
//   - status.go: StatusAddrs, the one reading of status.loadBalancer;
//   - ownership.go: Ours and Announceable;
//   - bgp.go, weightedecmp.go: the annotations about the VIPs' BGP paths.
//
// Errors about a value a Service sets wrap ipam.ErrInvalidRequest, which
// the provider reports as an InvalidAnnotation Event, and say which field
// or annotation is wrong, its value, and what would be valid.
package service
