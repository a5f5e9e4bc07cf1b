package deploy

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/kubelet"
)

// The pod routes need nothing of RBAC beyond the other controllers': the
// route controller reads Nodes, patches their NetworkUnavailable condition
// (nodes/status) and reports Events; the replicas' route syncers watch
// Nodes.
func init() {
	scenarios = append(scenarios, scenario{name: "pod routes", withRouter: true, cloudConfig: routesCloudConfig, run: routesScenario,
		args: []string{"--route-reconciliation-period=1s"}})
}

func routesCloudConfig(r *bgprouter.Router) string {
	return `
region: lab
racks:
- name: rack-a
  subnets: [198.51.100.0/25]
` + r.SpeakerConfig() + `routes:
  clusterCIDRs: [203.0.113.128/25]
healthCheck:
  enabled: false
`
}

// routesScenario: a Node's pod CIDR reaches the router via the Node, the
// route controller marks the Node's network available, and the route
// leaves with the Node.
func routesScenario(t *testing.T, e *env) {
	c := e.Admin
	ctx := context.Background()
	e.Router.WaitEstablished(t, waitTimeout)
	registerNode(t, c, "node-a1", "198.51.100.11")
	// What kube-controller-manager's node IPAM writes, while the CCM's
	// node controller initializes the same Node.
	kubelet.UpdateNode(t, c, "node-a1", func(n *v1.Node) {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = "203.0.113.128/28", []string{"203.0.113.128/28"}
	})
	waitRouter(t, e.Router, "203.0.113.128", "[198.51.100.11]")
	waitNode(t, c, "node-a1", "NetworkUnavailable=False from the route controller", func(n *v1.Node) bool {
		for _, cond := range n.Status.Conditions {
			if cond.Type == v1.NodeNetworkUnavailable {
				return cond.Status == v1.ConditionFalse && cond.Reason == "RouteCreated"
			}
		}
		return false
	})
	if err := c.CoreV1().Nodes().Delete(ctx, "node-a1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRouter(t, e.Router, "203.0.113.128", "[]")
}
