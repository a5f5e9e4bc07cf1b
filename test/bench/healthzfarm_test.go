//go:build bench

package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/baremetal-ccm/baremetal-ccm/test/proc"
)

// farmEnv makes the test binary the healthz farm (TestBenchHealthzFarm).
const farmEnv = "BMCCM_BENCH_HEALTHZ_FARM"

// healthzFarm is a child process (this test binary again) serving the
// kube-proxy-like healthz of many nodes, one address each. At 1,000 nodes
// the test process itself is busy when it matters (it takes in the
// routers' event streams of hundreds of thousands of paths, and collects
// their garbage), and a node whose healthz it serves late looks
// unhealthy to the replicas: a real cluster's kube-proxies run on their
// own machines. The farm does nothing else.
//
// The protocol, over the child's stdin and stdout: "serve ADDR" per
// endpoint, then "ready"; "set ADDR MODE" (healthMode's number),
// answered "ok" or "error TEXT".
type healthzFarm struct {
	*proc.Child
	mu sync.Mutex // one request at a time
}

// startHealthzFarm serves a healthy healthz on each of addrs (host:port)
// until the test ends.
func startHealthzFarm(t *testing.T, addrs []string) *healthzFarm {
	t.Helper()
	f := &healthzFarm{Child: proc.StartChild(t, "TestBenchHealthzFarm", farmEnv+"=1")}
	w := bufio.NewWriter(f.In)
	for _, a := range addrs {
		fmt.Fprintf(w, "serve %s\n", a)
	}
	fmt.Fprintln(w, "ready")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !f.Out.Scan() || f.Out.Text() != "ready" {
		t.Fatalf("the healthz farm did not get ready: %q, %v", f.Out.Text(), f.Out.Err())
	}
	return f
}

// set switches the endpoint on addr to m.
func (f *healthzFarm) set(addr string, m healthMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := fmt.Fprintf(f.In, "set %s %d\n", addr, m); err != nil {
		return fmt.Errorf("healthz farm: %w", err)
	}
	if !f.Out.Scan() {
		return fmt.Errorf("healthz farm: no answer: %v", f.Out.Err())
	}
	if msg, failed := strings.CutPrefix(f.Out.Text(), "error "); failed {
		return fmt.Errorf("healthz farm: setting %s to %s: %s", addr, m, msg)
	}
	return nil
}

// TestBenchHealthzFarm is the healthz farm's process (startHealthzFarm);
// run on its own, without farmEnv, it has nothing to do.
func TestBenchHealthzFarm(t *testing.T) {
	if os.Getenv(farmEnv) == "" {
		return // the child process of startHealthzFarm only
	}
	servers := map[string]*healthz{}
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	reply := func(s string) {
		fmt.Fprintln(out, s)
		_ = out.Flush()
	}
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 2 && f[0] == "serve":
			servers[f[1]] = serveHealthz(t, f[1])
		case len(f) == 1 && f[0] == "ready":
			reply("ready")
		case len(f) == 3 && f[0] == "set":
			h, ok := servers[f[1]]
			m, err := strconv.Atoi(f[2])
			switch {
			case !ok:
				reply("error no endpoint " + f[1])
			case err != nil || m < int(healthy) || m > int(hanging):
				reply("error no mode " + f[2])
			default:
				if err := h.set(healthMode(m)); err != nil {
					reply("error " + err.Error())
				} else {
					reply("ok")
				}
			}
		default:
			reply(fmt.Sprintf("error %q is no request", in.Text()))
		}
	}
}
