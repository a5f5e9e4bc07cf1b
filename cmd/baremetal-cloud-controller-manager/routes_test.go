package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cpconfig "k8s.io/cloud-provider/config"
	"k8s.io/cloud-provider/options"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
)

func TestAlignRouteFlags(t *testing.T) {
	dual := config.Routes{Enabled: true, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("203.0.113.128/25"), netip.MustParsePrefix("2001:db8:100::/56")}}
	for _, tc := range []struct {
		name            string
		routes          config.Routes
		clusterCIDR     string
		configureRoutes bool
		wantCIDR        string
		wantErr         string
		wantNote        bool
	}{
		{name: "routes off: flags untouched", routes: config.Routes{}, configureRoutes: true, wantCIDR: ""},
		{name: "no route controller: flags untouched", routes: dual, configureRoutes: false, wantCIDR: ""},
		{name: "defaults to the config", routes: dual, configureRoutes: true, wantCIDR: "203.0.113.128/25,2001:db8:100::/56", wantNote: true},
		{name: "the same, in another order", routes: dual, configureRoutes: true, clusterCIDR: "2001:db8:100::/56, 203.0.113.128/25", wantCIDR: "2001:db8:100::/56, 203.0.113.128/25"},
		{name: "another network", routes: dual, configureRoutes: true, clusterCIDR: "203.0.113.0/24,2001:db8:100::/56", wantErr: "differs from routes.clusterCIDRs"},
		{name: "one family missing", routes: dual, configureRoutes: true, clusterCIDR: "203.0.113.128/25", wantErr: "203.0.113.128/25, 2001:db8:100::/56"},
		{name: "not a CIDR", routes: dual, configureRoutes: true, clusterCIDR: "pods", wantErr: `"pods" is not a CIDR`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shared := &options.KubeCloudSharedOptions{KubeCloudSharedConfiguration: &cpconfig.KubeCloudSharedConfiguration{
				ClusterCIDR: tc.clusterCIDR, ConfigureCloudRoutes: tc.configureRoutes}}
			note, err := alignRouteFlags(shared, tc.routes)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("alignRouteFlags() = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("alignRouteFlags() = %v", err)
			}
			if shared.ClusterCIDR != tc.wantCIDR {
				t.Errorf("--cluster-cidr = %q, want %q", shared.ClusterCIDR, tc.wantCIDR)
			}
			if (note != "") != tc.wantNote {
				t.Errorf("note %q, want one: %v", note, tc.wantNote)
			}
		})
	}
}

// TestRouteFlagsRefusedBeforeStart: the binary refuses a --cluster-cidr
// that contradicts the cloud config before anything starts.
func TestRouteFlagsRefusedBeforeStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.yaml")
	cfg := "region: lab\nbgp:\n  asn: 64512\nroutes:\n  clusterCIDRs: [203.0.113.128/25]\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, err := ccm.Run(context.Background(), "--cloud-provider=baremetal", "--cloud-config="+path, "--kubeconfig=/nonexistent", "--secure-port=0", "--cluster-cidr=198.51.100.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 || !strings.Contains(out, "differs from routes.clusterCIDRs") {
		t.Errorf("exit %d, output:\n%s\nwant a refusal naming routes.clusterCIDRs", code, out)
	}
}
