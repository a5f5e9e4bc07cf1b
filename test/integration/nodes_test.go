package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/kubelet"
)

const (
	shutdownTaint = "node.cloudprovider.kubernetes.io/shutdown"
	waitTimeout   = kubelet.Timeout
)

// Shorthands for the kubelet's part and the ConfigMap's.
var (
	registerNode = kubelet.Register
	setReady     = kubelet.SetReady
	waitNode     = kubelet.WaitNode
	hasTaint     = kubelet.HasTaint
	writeFile    = ccm.WriteConfig
)

const inventory = `
region: lab
racks:
- name: rack-a
  zone: zone-a
  subnets: [198.51.100.0/25, 2001:db8:1::/64]
- name: rack-b
  subnets: [198.51.100.128/25]
machines:
- name: node-a1
  type: c3.small
  addresses: [198.51.100.11, 2001:db8:1::11]
- name: node-a2
- name: node-b1
  type: m3.large
`

func TestNodesFromInventory(t *testing.T) {
	cp := controlplane.StartT(t)
	c := cp.Client
	cloudConfig := filepath.Join(t.TempDir(), "cloud.yaml")
	writeFile(t, cloudConfig, inventory)
	ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: cloudConfig})

	// A dual-stack kubelet names both addresses in --node-ip: the upstream
	// node controller keeps only the addresses --node-ip names.
	registerNode(t, c, "node-a1", "198.51.100.11,2001:db8:1::11")
	registerNode(t, c, "node-a2", "198.51.100.12")
	registerNode(t, c, "node-b1", "198.51.100.140")

	for _, tc := range []struct {
		node, zone, instanceType string
		addresses                []v1.NodeAddress
	}{
		{"node-a1", "zone-a", "c3.small", []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "198.51.100.11"}, {Type: v1.NodeInternalIP, Address: "2001:db8:1::11"}, {Type: v1.NodeHostName, Address: "node-a1"}}},
		{"node-a2", "zone-a", "baremetal", []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "198.51.100.12"}, {Type: v1.NodeHostName, Address: "node-a2"}}},
		{"node-b1", "rack-b", "m3.large", []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "198.51.100.140"}, {Type: v1.NodeHostName, Address: "node-b1"}}},
	} {
		waitNode(t, c, tc.node, "initialised from the inventory", func(n *v1.Node) bool {
			return n.Spec.ProviderID == "baremetal://lab/"+tc.node &&
				n.Labels[v1.LabelTopologyZone] == tc.zone &&
				n.Labels[v1.LabelTopologyRegion] == "lab" &&
				n.Labels[v1.LabelInstanceTypeStable] == tc.instanceType &&
				slices.Equal(n.Status.Addresses, tc.addresses) &&
				!hasTaint(n, cloudproviderapi.TaintExternalCloudProvider)
		})
	}

	// A machine switched to shutdown gets the shutdown taint once its Node
	// is not Ready; a Ready one never does.
	writeFile(t, cloudConfig, inventory+"  state: shutdown\n")
	setReady(t, c, "node-b1", v1.ConditionFalse)
	waitNode(t, c, "node-b1", "shutdown taint", func(n *v1.Node) bool { return hasTaint(n, shutdownTaint) })

	// A machine removed from the inventory gets its NotReady Node deleted.
	removed := inventory[:len(inventory)-len("- name: node-a2\n- name: node-b1\n  type: m3.large\n")] + "- name: node-b1\n  type: m3.large\n  state: shutdown\n"
	writeFile(t, cloudConfig, removed)
	setReady(t, c, "node-a2", v1.ConditionFalse)
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Nodes().Get(ctx, "node-a2", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("node-a2, gone from the inventory and NotReady, was not deleted within %s", waitTimeout)
	}
	for _, name := range []string{"node-a1", "node-b1"} {
		if _, err := c.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("node %s, still in the inventory: %v", name, err)
		}
	}
	n, _ := c.CoreV1().Nodes().Get(context.Background(), "node-a1", metav1.GetOptions{})
	if hasTaint(n, shutdownTaint) {
		t.Errorf("node-a1, running and Ready, has the shutdown taint")
	}
}

// TestNodesWithoutInventory checks that without an inventory every Node is a
// running machine: initialised from its own address, never deleted.
func TestNodesWithoutInventory(t *testing.T) {
	cp := controlplane.StartT(t)
	c := cp.Client
	cloudConfig := filepath.Join(t.TempDir(), "cloud.yaml")
	writeFile(t, cloudConfig, "region: lab\nracks:\n- name: rack-a\n  subnets: [198.51.100.0/24]\n")
	ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: cloudConfig})

	for i := range 3 {
		registerNode(t, c, fmt.Sprintf("node-%d", i), fmt.Sprintf("198.51.100.%d", 20+i))
	}
	for i := range 3 {
		waitNode(t, c, fmt.Sprintf("node-%d", i), "initialised", func(n *v1.Node) bool {
			return n.Spec.ProviderID != "" && n.Labels[v1.LabelTopologyZone] == "rack-a" && !hasTaint(n, cloudproviderapi.TaintExternalCloudProvider)
		})
		setReady(t, c, fmt.Sprintf("node-%d", i), v1.ConditionFalse)
	}
	// The lifecycle controller looks every second (--node-monitor-period=1s
	// in the test flags); give it many rounds to do the wrong thing.
	time.Sleep(8 * time.Second)
	nodes, err := c.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 3 {
		t.Fatalf("without an inventory, %d of 3 NotReady nodes are left", len(nodes.Items))
	}
	for _, n := range nodes.Items {
		if hasTaint(&n, shutdownTaint) {
			t.Errorf("node %s got the shutdown taint without an inventory", n.Name)
		}
	}
}
