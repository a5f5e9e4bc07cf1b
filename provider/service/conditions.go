package service

// The conditions this provider keeps on a Service's status.conditions. The
// types carry the provider's domain, as the API conventions ask of
// conditions owned by a component outside Kubernetes itself; kubectl
// describe svc lists them, and
//
//	kubectl get svc NAME -o jsonpath='{.status.conditions}'
//
// prints them.
const (
	// ConditionAddressAllocated is True when the Service holds its
	// addresses (the message names each one's pool), False with the
	// reason when it cannot have them.
	ConditionAddressAllocated = "baremetal-ccm.io/AddressAllocated"
	// ConditionAnnounced is True when every address of the Service is
	// announced (the message says via how many nodes to how many
	// routers), False with the reason when one is not.
	ConditionAnnounced = "baremetal-ccm.io/Announced"
)

// AnnotationAllocatedFromPool records the pool the Service's addresses
// came from (several, comma-separated in address order, when they came
// from several). The provider writes it; what a user writes there is
// replaced.
const AnnotationAllocatedFromPool = "baremetal-ccm.io/ip-allocated-from-pool"
