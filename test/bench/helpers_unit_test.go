package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
	"github.com/baremetal-ccm/baremetal-ccm/test/bgprouter"
)

func TestSummarize(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want summary
	}{
		{"empty", nil, summary{}},
		{"one", ms(7), summary{N: 1, Min: 7e6, P50: 7e6, P90: 7e6, P99: 7e6, Max: 7e6, Mean: 7e6}},
		{"four", ms(4, 1, 3, 2), summary{N: 4, Min: 1e6, P50: 2e6, P90: 4e6, P99: 4e6, Max: 4e6, Mean: 2500e3}},
		{"hundred: p99 is the 99th", ms(hundred...), summary{N: 100, Min: 1e6, P50: 50e6, P90: 90e6, P99: 99e6, Max: 100e6, Mean: 50500e3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			if got := summarize(in); got != tc.want {
				t.Errorf("summarize: got %+v, want %+v", got, tc.want)
			}
			if !slices.Equal(in, tc.in) {
				t.Errorf("summarize modified its input")
			}
		})
	}
}

func TestNodesAndConfig(t *testing.T) {
	nodes := benchNodes(50)
	if got, want := nodes[49], (node{"node-50", "198.51.100.60,2001:db8:1::3c"}); got != want {
		t.Errorf("benchNodes(50)[49]: got %v, want %v", got, want)
	}
	if got, want := loopbackNodes(50)[49].ip, "127.0.0.60"; got != want {
		t.Errorf("loopbackNodes(50)[49]: got %s, want %s", got, want)
	}
	docs := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	for _, n := range nodes {
		for _, s := range []string{n.ip[:len("198.51.100.xx")], n.ip[len("198.51.100.xx,"):]} {
			a := netip.MustParseAddr(s)
			if !slices.ContainsFunc(docs, func(p netip.Prefix) bool { return p.Contains(a) }) {
				t.Errorf("node %s: address %s is not in a documentation range", n.name, a)
			}
		}
	}

	r := &bgprouter.Router{Address: "127.0.0.1", Port: 1790, ASN: 64513, NeighborASN: 64512}
	for _, tc := range []struct{ pool, health string }{
		{"2001:db8:100::/112", "  enabled: false\n"},
		{"203.0.113.0/24", "  port: 18080\n"},
	} {
		cfg, err := config.Parse([]byte(cloudConfig(r, tc.pool, tc.health)))
		if err != nil {
			t.Errorf("cloudConfig(%s): %v", tc.pool, err)
			continue
		}
		if got := cfg.HealthCheck.Interval; tc.health == "  port: 18080\n" && got != time.Second {
			t.Errorf("health check interval: got %s, want the default 1s", got)
		}
	}
}

// TestHealthzModes checks the fake kube-proxy answers as each mode says,
// and that refused really closes the port and comes back.
func TestHealthzModes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h := serveHealthz(t, addr)
	client := &http.Client{Timeout: 300 * time.Millisecond}
	probe := func() string {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return "timeout"
			}
			return "error"
		}
		resp.Body.Close()
		return fmt.Sprint(resp.StatusCode)
	}
	for _, tc := range []struct {
		mode healthMode
		want string
	}{
		{healthy, "200"},
		{answer503, "503"},
		{refused, "error"},
		{healthy, "200"},
		{hanging, "timeout"},
		{refused, "error"},
		{answer503, "503"},
		{healthy, "200"},
	} {
		if err := h.set(tc.mode); err != nil {
			t.Fatalf("set(%s): %v", tc.mode, err)
		}
		if got := probe(); got != tc.want {
			t.Errorf("mode %s: probe got %s, want %s", tc.mode, got, tc.want)
		}
	}
	if err := h.set(refused); err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: time.Second}
	if c, err := d.DialContext(context.Background(), "tcp", addr); err == nil {
		c.Close()
		t.Errorf("mode refused: got an accepted connection, want refused")
	}
}

func TestCarrying(t *testing.T) {
	a := netip.MustParseAddr
	table := map[netip.Addr][]netip.Addr{
		a("2001:db8:100::2"): {a("2001:db8:1::b"), a("2001:db8:1::c")},
		a("2001:db8:100::1"): {a("2001:db8:1::c")},
		a("2001:db8:100::3"): {a("2001:db8:1::b")},
	}
	for _, tc := range []struct {
		hop  string
		want []netip.Addr
	}{
		{"2001:db8:1::c", []netip.Addr{a("2001:db8:100::1"), a("2001:db8:100::2")}},
		{"2001:db8:1::d", nil},
	} {
		if got := carrying(table, a(tc.hop)); !slices.Equal(got, tc.want) {
			t.Errorf("carrying(%s): got %v, want %v", tc.hop, got, tc.want)
		}
	}
}

func TestCPUTimes(t *testing.T) {
	before := cpuTimes()
	// Work until the clock-tick CPU time moves: on a busy machine a fixed
	// span of wall time may get no tick at all. Bounded: a cpuTimes that
	// does not see this process's time never moves.
	after := before
	for start := time.Now(); after["test"] <= before["test"] && time.Since(start) < time.Minute; {
		after = cpuTimes()
	}
	if after["test"] <= before["test"] {
		t.Errorf("CPU time of this process: still %s after a minute of work, want more", after["test"])
	}
	if got := cpuSince(before); got == "" {
		t.Errorf("cpuSince: got %q, want this process's time", got)
	}
}
