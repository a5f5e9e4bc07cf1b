package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/lbservice"
)

// scrape returns the CCM's /metrics (served on its secure port; the test
// lets /metrics through without credentials).
func scrape(t *testing.T, port int) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping /metrics: %s %v\n%s", resp.Status, err, body)
	}
	return string(body)
}

func waitMetric(t *testing.T, port int, lines ...string) {
	t.Helper()
	var body string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		body = scrape(t, port)
		for _, l := range lines {
			if !strings.Contains(body, l) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		var ours []string
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "baremetal_ccm_") {
				ours = append(ours, l)
			}
		}
		t.Fatalf("metrics lack %q; ours:\n%s", lines, strings.Join(ours, "\n"))
	}
}

// TestConfigReloadAndMetrics changes the cloud config under a running CCM:
// an invalid file is refused and counted while the running config stays;
// a new pool and a new router take effect without a restart, and no live
// Service's address changes. The metrics follow.
func TestConfigReloadAndMetrics(t *testing.T) {
	cp := controlplane.StartT(t)
	c := cp.Client
	tor := bgprouter.Start(t, bgprouter.Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	// The router the reload adds. Started now: GoBGP's StartBgp writes
	// package-level route-selection options that a running server reads,
	// so a second server must not start while the first handles paths.
	tor2 := bgprouter.Start(t, bgprouter.Options{Address: "127.0.0.5", ASN: 64514, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	cloudConfig := filepath.Join(t.TempDir(), "cloud.yaml")
	base := lbConfig(tor)
	writeFile(t, cloudConfig, base)
	port := freeLoopbackPort(t)
	p := ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: cloudConfig, Args: []string{
		fmt.Sprintf("--secure-port=%d", port), "--bind-address=127.0.0.1",
		"--authorization-always-allow-paths=/healthz,/metrics", "--authentication-skip-lookup",
	}})
	for i := 1; i <= 2; i++ {
		registerNode(t, c, fmt.Sprintf("node-%d", i), fmt.Sprintf("198.51.100.1%d", i))
	}
	createService(t, c, lbservice.New("web", 80))
	waitIngress(t, c, "web", "203.0.113.1")
	waitRoutes(t, tor, "web announced", map[string][]string{"203.0.113.1": {"198.51.100.11", "198.51.100.12"}})
	waitMetric(t, port,
		`baremetal_ccm_pool_addresses{family="IPv4",pool="public",state="in_use"} 1`,
		`baremetal_ccm_pool_addresses{family="IPv4",pool="public",state="total"} 15`,
		`baremetal_ccm_bgp_session_up{peer="tor-a"} 1`,
		`baremetal_ccm_bgp_paths_announced{family="ipv4-unicast",peer="tor-a"} 2`,
	)
	// Ensure runs again when the leader records the Service's pool in its
	// annotation (the service controller syncs on annotation changes).
	waitMetricValue(t, port, `baremetal_ccm_ensure_load_balancer_duration_seconds_count`, ">= 1", func(v float64) bool { return v >= 1 })

	// An invalid file: refused, counted, and the running config stays.
	writeFile(t, cloudConfig, base+"bogus: true\n")
	waitMetric(t, port, `baremetal_ccm_config_reloads_total{result="invalid"} 1`)
	if !strings.Contains(p.Log(), `unknown field \"bogus\"`) && !strings.Contains(p.Log(), `unknown field "bogus"`) {
		t.Errorf("the log does not say why the file was refused")
	}
	createService(t, c, lbservice.New("web2", 80))
	waitIngress(t, c, "web2", "203.0.113.2")

	// A new pool and the second router, live.
	changed := strings.Replace(base, "healthCheck:", fmt.Sprintf("  - name: tor-b\n    address: %s\n    port: %d\n    asn: %d\nhealthCheck:", tor2.Address, tor2.Port, tor2.ASN), 1)
	changed = strings.Replace(changed, "bgp:\n", "- name: extra\n  addresses: [192.0.2.128/28]\n  autoAssign: false\nbgp:\n", 1)
	writeFile(t, cloudConfig, changed)
	waitMetric(t, port, `baremetal_ccm_config_reloads_total{result="applied"} 1`)
	tor2.WaitEstablished(t, waitTimeout)
	createService(t, c, lbservice.New("extra", 80, func(s *v1.Service) { s.Annotations["baremetal-ccm.io/pool"] = "extra" }))
	waitIngress(t, c, "extra", "192.0.2.128")
	want := map[string][]string{
		"203.0.113.1": {"198.51.100.11", "198.51.100.12"}, "203.0.113.2": {"198.51.100.11", "198.51.100.12"},
		"192.0.2.128": {"198.51.100.11", "198.51.100.12"},
	}
	waitRoutes(t, tor, "first router after the reload", want)
	waitRoutes(t, tor2, "the router added by the reload", want)
	waitIngress(t, c, "web", "203.0.113.1")

	// A pool removed under a live Service: the Service keeps its address.
	writeFile(t, cloudConfig, strings.Replace(changed, "- name: extra\n  addresses: [192.0.2.128/28]\n  autoAssign: false\n", "", 1))
	waitMetric(t, port, `baremetal_ccm_config_reloads_total{result="applied"} 2`)
	// The reload has been applied in full once it reports the stale
	// address; only then is "nothing changed" worth checking.
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		return strings.Contains(p.Log(), "a Service keeps an address that is in no pool any more"), nil
	}); err != nil {
		t.Fatalf("the reload that removed the pool never reported the stale address")
	}
	waitIngress(t, c, "extra", "192.0.2.128")
	waitRoutes(t, tor, "after the pool was removed", want)
}
