package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
	"github.com/baremetal-ccm/baremetal-ccm/test/ccm"
	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
)

// readyz returns the status code and body of /readyz; code 0 when it
// does not answer.
func readyz(url string) (int, string) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

func waitReadyz(t *testing.T, url string, code int, body string) {
	t.Helper()
	var gotCode int
	var gotBody string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		gotCode, gotBody = readyz(url)
		return gotCode == code && strings.Contains(gotBody, body), nil
	})
	if err != nil {
		t.Fatalf("/readyz = %d %q, want %d %q", gotCode, gotBody, code, body)
	}
}

// TestReadyz: /readyz fails while the replica's only BGP session is down
// and succeeds once it is Established; it fails again when the session
// goes down.
func TestReadyz(t *testing.T) {
	cp := controlplane.StartT(t)
	router := bgprouter.Start(t, bgprouter.Options{ASN: 64513, Neighbors: []string{"127.0.0.1"}, NeighborASN: 64512})
	// The router refuses the session until the test lets it up.
	if err := router.DisableNeighbor("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	cloudConfig := filepath.Join(t.TempDir(), "cloud.yaml")
	writeFile(t, cloudConfig, lbConfig(router))
	port := freeLoopbackPort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	ccm.Start(t, ccm.Options{Kubeconfig: cp.Kubeconfig, CloudConfig: cloudConfig, Args: []string{fmt.Sprintf("--readiness-bind-address=127.0.0.1:%d", port)}})

	waitReadyz(t, url, http.StatusServiceUnavailable, "none of the 1 BGP sessions is Established")
	// Still not ready a while later: nothing but the session makes it so.
	time.Sleep(3 * time.Second)
	if code, body := readyz(url); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d %q with the session down, want 503", code, body)
	}

	if err := router.EnableNeighbor("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	router.WaitEstablished(t, waitTimeout)
	waitReadyz(t, url, http.StatusOK, "ok")

	if err := router.DisableNeighbor("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, url, http.StatusServiceUnavailable, "none of the 1 BGP sessions is Established")
}
