// Package kubelet does, for tests, what a kubelet started with
// --cloud-provider=external does to its Node: register it tainted
// uninitialized with its --node-ip in an annotation, and report Ready.
package kubelet

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	cloudproviderapi "k8s.io/cloud-provider/api"
)

// Timeout bounds every wait here: generous for a busy 2-core machine; the
// controllers act within seconds.
const Timeout = 60 * time.Second

// Register creates a Node as the kubelet does, and makes it Ready. nodeIP
// is --node-ip (comma-separated for dual-stack); empty: none.
func Register(t testing.TB, c kubernetes.Interface, name, nodeIP string) {
	t.Helper()
	if err := Create(context.Background(), c, name, nodeIP); err != nil {
		t.Fatal(err)
	}
	SetReady(t, c, name, v1.ConditionTrue)
}

// RegisterReady is Register for callers without a testing.TB, such as
// the goroutines that register many Nodes at once: it creates the Node
// and writes its Ready condition (see WriteReady).
func RegisterReady(ctx context.Context, c kubernetes.Interface, name, nodeIP string) error {
	if err := Create(ctx, c, name, nodeIP); err != nil {
		return err
	}
	return WriteReady(ctx, c, name, v1.ConditionTrue)
}

// Create creates the Node as Register does, without the Ready condition:
// for callers that register many Nodes from several goroutines and set
// their status themselves (see ReadyCondition).
func Create(ctx context.Context, c kubernetes.Interface, name, nodeIP string) error {
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
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	return nil
}

// ReadyCondition is the Ready condition a kubelet reports, of status.
func ReadyCondition(status v1.ConditionStatus) v1.NodeCondition {
	now := metav1.Now()
	return v1.NodeCondition{Type: v1.NodeReady, Status: status, Reason: "Test", LastHeartbeatTime: now, LastTransitionTime: now}
}

// SetReady sets the Node's Ready condition, retrying on conflicts.
func SetReady(t testing.TB, c kubernetes.Interface, name string, status v1.ConditionStatus) {
	t.Helper()
	if err := WriteReady(context.Background(), c, name, status); err != nil {
		t.Fatal(err)
	}
}

// WriteReady writes the Node's Ready condition, from a fresh read on a
// conflict (the CCM's node controller writes the same Node).
func WriteReady(ctx context.Context, c kubernetes.Interface, name string, status v1.ConditionStatus) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, Timeout, true, func(ctx context.Context) (bool, error) {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		n.Status.Conditions = slices.DeleteFunc(n.Status.Conditions, func(c v1.NodeCondition) bool { return c.Type == v1.NodeReady })
		n.Status.Conditions = append(n.Status.Conditions, ReadyCondition(status))
		_, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("setting node %s Ready=%s: %w", name, status, err)
	}
	return nil
}

// conflictBackoff bounds UpdateNode's retries: about 10 s in all, enough
// for the CCM's node controller, which writes the same Nodes, to finish.
var conflictBackoff = wait.Backoff{Steps: 10, Duration: 20 * time.Millisecond, Factor: 2, Jitter: 0.1}

// UpdateNode applies mutate to the Node's latest version and writes it,
// again from a fresh read on a conflict: the CCM's node and route
// controllers write the same Nodes while a test changes them.
func UpdateNode(t testing.TB, c kubernetes.Interface, name string, mutate func(*v1.Node)) {
	t.Helper()
	err := retry.RetryOnConflict(conflictBackoff, func() error {
		n, err := c.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(n)
		_, err = c.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("updating node %s: %v", name, err)
	}
}

// WaitNode polls until cond holds for the Node, failing the test with the
// last state seen after Timeout.
func WaitNode(t testing.TB, c kubernetes.Interface, name, what string, cond func(*v1.Node) bool) {
	t.Helper()
	var last *v1.Node
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, Timeout, true, func(ctx context.Context) (bool, error) {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = n
		return cond(n), nil
	})
	if err != nil {
		t.Fatalf("node %s: %s: not after %s; last seen: %s", name, what, Timeout, describe(last))
	}
}

// HasTaint tells whether the Node has a taint with this key.
func HasTaint(n *v1.Node, key string) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t v1.Taint) bool { return t.Key == key })
}

func describe(n *v1.Node) string {
	if n == nil {
		return "never"
	}
	return fmt.Sprintf("providerID=%q labels=%v taints=%v addresses=%v", n.Spec.ProviderID, n.Labels, n.Spec.Taints, n.Status.Addresses)
}
