package provider

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	cloudprovider "k8s.io/cloud-provider"
	cloudproviderapi "k8s.io/cloud-provider/api"
)

const inventoryConfig = `
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
- name: node-b1
  state: shutdown
- name: node-b2
  rack: rack-b
`

// makeCloud builds the cloud the one way the binary does, on a fake
// client.
func makeCloud(t *testing.T, yaml string) *cloud {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cloud.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := New(ctx, Options{ConfigFile: file, Client: fake.NewClientset()})
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	return c.(*cloud)
}

func makeNode(name, providedIP string, internalIPs ...string) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if providedIP != "" {
		n.Annotations = map[string]string{cloudproviderapi.AnnotationAlphaProvidedIPAddr: providedIP}
	}
	for _, ip := range internalIPs {
		n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip})
	}
	return n
}

func internal(ips ...string) []v1.NodeAddress {
	var out []v1.NodeAddress
	for _, ip := range ips {
		out = append(out, v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip})
	}
	return out
}

func withHostname(addrs []v1.NodeAddress, name string) []v1.NodeAddress {
	return append(addrs, v1.NodeAddress{Type: v1.NodeHostName, Address: name})
}

func TestInstanceMetadata(t *testing.T) {
	for _, tc := range []struct {
		name    string
		config  string
		node    *v1.Node
		want    *cloudprovider.InstanceMetadata
		wantErr error // nil: success; else errors.Is target or errAny
	}{
		{
			name: "inventory addresses win over the node's", config: inventoryConfig,
			node: makeNode("node-a1", "198.51.100.99"),
			want: &cloudprovider.InstanceMetadata{ProviderID: "baremetal://lab/node-a1", InstanceType: "c3.small", Zone: "zone-a", Region: "lab",
				NodeAddresses: withHostname(internal("198.51.100.11", "2001:db8:1::11"), "node-a1")},
		},
		{
			name: "node-ip annotation when the inventory has none, rack from the address", config: inventoryConfig,
			node: makeNode("node-b1", "198.51.100.140"),
			want: &cloudprovider.InstanceMetadata{ProviderID: "baremetal://lab/node-b1", InstanceType: "baremetal", Zone: "rack-b", Region: "lab",
				NodeAddresses: withHostname(internal("198.51.100.140"), "node-b1")},
		},
		{
			name: "dual-stack node-ip annotation", config: "region: lab\n",
			node: makeNode("n1", "198.51.100.5,2001:db8:9::5"),
			want: &cloudprovider.InstanceMetadata{ProviderID: "baremetal://lab/n1", InstanceType: "baremetal", Region: "lab",
				NodeAddresses: withHostname(internal("198.51.100.5", "2001:db8:9::5"), "n1")},
		},
		{
			name: "explicit rack wins over addresses", config: inventoryConfig,
			node: makeNode("node-b2", "", "198.51.100.20"),
			want: &cloudprovider.InstanceMetadata{ProviderID: "baremetal://lab/node-b2", InstanceType: "baremetal", Zone: "rack-b", Region: "lab",
				NodeAddresses: withHostname(internal("198.51.100.20"), "node-b2")},
		},
		{
			name: "no inventory: the node's InternalIPs", config: "region: lab\nracks:\n- name: rack-a\n  zone: zone-a\n  subnets: [198.51.100.0/24]\n",
			node: makeNode("anything", "", "198.51.100.7"),
			want: &cloudprovider.InstanceMetadata{ProviderID: "baremetal://lab/anything", InstanceType: "baremetal", Zone: "zone-a", Region: "lab",
				NodeAddresses: withHostname(internal("198.51.100.7"), "anything")},
		},
		{name: "not in the inventory", config: inventoryConfig, node: makeNode("stranger", "198.51.100.3"), wantErr: cloudprovider.InstanceNotFound},
		{name: "no address anywhere", config: "region: lab\n", node: makeNode("n1", ""), wantErr: errAny},
		{name: "bad node-ip annotation", config: "region: lab\n", node: makeNode("n1", "198.51.100.x"), wantErr: errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := makeCloud(t, tc.config)
			got, err := c.InstanceMetadata(context.Background(), tc.node)
			if tc.wantErr != nil {
				if err == nil || (tc.wantErr != errAny && !errors.Is(err, tc.wantErr)) {
					t.Fatalf("InstanceMetadata(%s) = %+v, %v; want error %v", tc.node.Name, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("InstanceMetadata(%s) = %v", tc.node.Name, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("InstanceMetadata(%s) mismatch (-want +got):\n%s", tc.node.Name, diff)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestInstanceExistsAndShutdown(t *testing.T) {
	for _, tc := range []struct {
		config       string
		node         string
		wantExists   bool
		wantShutdown bool
	}{
		{inventoryConfig, "node-a1", true, false},
		{inventoryConfig, "node-b1", true, true},
		{inventoryConfig, "stranger", false, false},
		{"region: lab\n", "anything", true, false},
		{"region: lab\nmachines: []\n", "anything", true, false},
	} {
		c := makeCloud(t, tc.config)
		node := makeNode(tc.node, "")
		exists, err := c.InstanceExists(context.Background(), node)
		if err != nil || exists != tc.wantExists {
			t.Errorf("InstanceExists(%s) = %v, %v; want %v", tc.node, exists, err, tc.wantExists)
		}
		shutdown, err := c.InstanceShutdown(context.Background(), node)
		if err != nil || shutdown != tc.wantShutdown {
			t.Errorf("InstanceShutdown(%s) = %v, %v; want %v", tc.node, shutdown, err, tc.wantShutdown)
		}
	}
}
