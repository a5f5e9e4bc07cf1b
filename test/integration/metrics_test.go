package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
)

// metricValue returns the value of the sample named series (name and
// labels as /metrics prints them) in body.
func metricValue(body, series string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// waitMetricValue waits until the series' value satisfies ok.
func waitMetricValue(t *testing.T, port int, series, what string, ok func(float64) bool) {
	t.Helper()
	var got float64
	var found bool
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		got, found = metricValue(scrape(t, port), series)
		return found && ok(got), nil
	})
	if err != nil {
		t.Fatalf("%s = %v (present: %v), want %s", series, got, found, what)
	}
}

// TestAlertMetrics: the metrics the PrometheusRule alerts on follow what
// they say: a rejected config, sessions down and their flaps, UPDATEs
// sent, allocation failures, fail-open and a Node outside every rack.
func TestAlertMetrics(t *testing.T) {
	cp := controlplane.StartT(t)
	c := cp.Client
	router := bgprouter.Start(t, bgprouter.Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	hcPort := freeLoopbackPort(t)
	healthy := &atomic.Bool{}
	healthy.Store(true)
	for i := 1; i <= 2; i++ {
		addr := fmt.Sprintf("127.0.0.%d", 10+i)
		serveHealthz(t, fmt.Sprintf("%s:%d", addr, hcPort), healthy)
		registerNode(t, c, fmt.Sprintf("node-%d", i), addr)
	}
	base := strings.Replace(lbConfig(router), "subnets: [198.51.100.0/24, 2001:db8:1::/64]", "subnets: [127.0.0.0/24, 2001:db8:1::/64]", 1)
	base = strings.Replace(base, "healthCheck:\n  enabled: false\n", fmt.Sprintf("healthCheck:\n  port: %d\n  interval: 200ms\n  timeout: 100ms\n", hcPort), 1)
	cloudConfig := filepath.Join(t.TempDir(), "cloud.yaml")
	writeFile(t, cloudConfig, base)
	port := freeLoopbackPort(t)
	ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: cloudConfig, Args: []string{
		fmt.Sprintf("--secure-port=%d", port), "--bind-address=127.0.0.1",
		"--authorization-always-allow-paths=/healthz,/metrics", "--authentication-skip-lookup",
	}})
	router.WaitEstablished(t, waitTimeout)
	is := func(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

	createService(t, c, lbservice.New("web", 80))
	waitIngress(t, c, "web", "203.0.113.1")
	waitMetricValue(t, port, `baremetal_ccm_bgp_updates_sent_total{peer="tor-a"}`, "> 0", func(v float64) bool { return v > 0 })
	waitMetricValue(t, port, `baremetal_ccm_bgp_peers_not_established`, "0", is(0))
	waitMetricValue(t, port, `baremetal_ccm_config_stale`, "0", is(0))
	waitMetricValue(t, port, `baremetal_ccm_nodes_outside_racks`, "0", is(0))
	waitMetricValue(t, port, `baremetal_ccm_health_fail_open_vips{family="ipv4"}`, "0", is(0))

	// A rejected config is stale until a good one is in force again.
	writeFile(t, cloudConfig, base+"bogus: true\n")
	waitMetricValue(t, port, `baremetal_ccm_config_stale`, "1", is(1))
	writeFile(t, cloudConfig, base)
	waitMetricValue(t, port, `baremetal_ccm_config_stale`, "0", is(0))

	// A session down, counted as down and as a flap.
	if err := router.DisableNeighbor("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	waitMetricValue(t, port, `baremetal_ccm_bgp_peers_not_established`, "1", is(1))
	waitMetricValue(t, port, `baremetal_ccm_bgp_session_flaps_total{peer="tor-a"}`, "1", is(1))
	if err := router.EnableNeighbor("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	waitMetricValue(t, port, `baremetal_ccm_bgp_peers_not_established`, "0", is(0))

	// An allocation that fails, by reason.
	createService(t, c, lbservice.New("nopool", 80, func(s *v1.Service) { s.Annotations["baremetal-ccm.io/pool"] = "nosuchpool" }))
	waitMetricValue(t, port, `baremetal_ccm_allocation_failures_total{reason="UnknownPool"}`, ">= 1", func(v float64) bool { return v >= 1 })

	// Every node fails its health check: fail open.
	healthy.Store(false)
	waitMetricValue(t, port, `baremetal_ccm_health_fail_open_vips{family="ipv4"}`, "1", is(1))
	healthy.Store(true)
	waitMetricValue(t, port, `baremetal_ccm_health_fail_open_vips{family="ipv4"}`, "0", is(0))

	// A Node outside every rack: a Warning on the Node, and counted.
	registerNode(t, c, "node-x", "127.0.1.77") // loopback: its health probe stays on this host
	waitMetricValue(t, port, `baremetal_ccm_nodes_outside_racks`, "1", is(1))
	waitNodeEvent(t, c, "node-x", "NodeOutsideRacks")
}
