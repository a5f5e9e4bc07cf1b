package service

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// AnnotationWeightedECMP set to "false" opts a Service out of weighted
// ECMP (bgp.weightedECMP): its VIPs' paths carry no link-bandwidth
// community, and routers spread its traffic equally over the nodes that
// hold a ready endpoint. "true" is the default and changes nothing: the
// cloud config decides whether weighted ECMP is on at all. Useful for
// long-lived connections, which a change of weights can move to another
// node (docs/weighted-ecmp.md).
const AnnotationWeightedECMP = "baremetal-ccm.io/weighted-ecmp"

// WantsWeightedECMP tells whether a Service leaves weighted ECMP on: no
// annotation or "true" (case insensitive, spaces ignored) is yes,
// "false" is no. Any other value is an error, and no: a Service that
// meant to opt out with a misspelt value gets what it most likely meant,
// plain ECMP, until the value is fixed.
func WantsWeightedECMP(s *v1.Service) (bool, error) {
	v, ok := s.Annotations[AnnotationWeightedECMP]
	if !ok {
		return true, nil
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("annotation %s=%q: must be \"true\" or \"false\" (weighted ECMP is off for this Service until it is one of them)", AnnotationWeightedECMP, shorten(v))
}
