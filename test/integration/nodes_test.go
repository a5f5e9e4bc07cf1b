package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	cloudproviderapi "k8s.io/cloud-provider/api"

	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
)

const (
	shutdownTaint = "node.cloudprovider.kubernetes.io/shutdown"
	// Generous for a busy 2-core machine; the controllers act within seconds.
	waitTimeout = 60 * time.Second
)

// registerNode creates a Node the way a kubelet started with
// --cloud-provider=external and --node-ip does: tainted uninitialized, the
// node IP in an annotation, and Ready.
func registerNode(t *testing.T, c kubernetes.Interface, name, nodeIP string) {
	t.Helper()
	ctx := context.Background()
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}},
		Spec: v1.NodeSpec{Taints: []v1.Taint{{
			Key: cloudproviderapi.TaintExternalCloudProvider, Value: "true", Effect: v1.TaintEffectNoSchedule,
		}}},
	}
	if nodeIP != "" {
		n.Annotations[cloudproviderapi.AnnotationAlphaProvidedIPAddr] = nodeIP
	}
	if _, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating node %s: %v", name, err)
	}
	setReady(t, c, name, v1.ConditionTrue)
}

func setReady(t *testing.T, c kubernetes.Interface, name string, status v1.ConditionStatus) {
	t.Helper()
	ctx := context.Background()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		now := metav1.Now()
		cond := v1.NodeCondition{Type: v1.NodeReady, Status: status, Reason: "Test", LastHeartbeatTime: now, LastTransitionTime: now}
		n.Status.Conditions = slices.DeleteFunc(n.Status.Conditions, func(c v1.NodeCondition) bool { return c.Type == v1.NodeReady })
		n.Status.Conditions = append(n.Status.Conditions, cond)
		_, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("setting node %s Ready=%s: %v", name, status, err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write-then-rename, as a ConfigMap update does: a reader never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitNode polls until cond holds for the node, failing the test with the
// last state seen after waitTimeout.
func waitNode(t *testing.T, c kubernetes.Interface, name, what string, cond func(*v1.Node) bool) {
	t.Helper()
	var last *v1.Node
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = n
		return cond(n), nil
	})
	if err != nil {
		t.Fatalf("node %s: %s: not after %s; last seen: spec=%+v labels=%v addresses=%v", name, what, waitTimeout, last.Spec, last.Labels, last.Status.Addresses)
	}
}

func hasTaint(n *v1.Node, key string) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t v1.Taint) bool { return t.Key == key })
}

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
