package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// Result is one request of lbprobe.
type Result struct {
	Seq  int     `json:"seq"`
	Node string  `json:"node,omitempty"`
	Err  string  `json:"err,omitempty"`
	MS   float64 `json:"ms"`
}

// Results are the outcome of a request loop.
type Results []Result

// Spread counts the answers per node.
func (rs Results) Spread() map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		if r.Err == "" {
			m[r.Node]++
		}
	}
	return m
}

// Failed returns the failed requests.
func (rs Results) Failed() Results {
	var out Results
	for _, r := range rs {
		if r.Err != "" {
			out = append(out, r)
		}
	}
	return out
}

// URL is http://vip:port/.
func URL(vip string, port int) string {
	return "http://" + net.JoinHostPort(vip, strconv.Itoa(port)) + "/"
}

// ProbeCmd returns the command running count requests from the client
// namespace, each with timeout, interval apart.
func (l *Lab) ProbeCmd(ctx context.Context, url string, count int, interval, timeout time.Duration) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", "netns", "exec", l.Client.Name, l.Opts.ProbeBinary,
		"--url="+url, "--count="+strconv.Itoa(count), "--interval="+interval.String(), "--timeout="+timeout.String())
}

// Probe sends count requests from the client and returns their results.
func (l *Lab) Probe(ctx context.Context, url string, count int, interval, timeout time.Duration) (Results, error) {
	budget := time.Duration(count)*(interval+timeout) + 30*time.Second
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	cmd := l.ProbeCmd(ctx, url, count, interval, timeout)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	rs, perr := ParseResults(out)
	if err != nil {
		return rs, fmt.Errorf("lbprobe: %w: %s", err, stderr.String())
	}
	return rs, perr
}

// ParseResults parses lbprobe's output.
func ParseResults(out []byte) (Results, error) {
	var rs Results
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return rs, fmt.Errorf("lbprobe output %q: %w", sc.Text(), err)
		}
		rs = append(rs, r)
	}
	return rs, sc.Err()
}

// NextHops returns the next hops of the ToR's kernel route for prefix
// (none when there is no route), sorted.
func (r *Rack) NextHops(ctx context.Context, prefix netip.Prefix) ([]netip.Addr, error) {
	routes, err := fabric.Routes(ctx, r.NS, prefix)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, rt := range routes {
		for _, g := range rt.Gateways() {
			if !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out, nil
}

// HostPrefix is addr/32 or addr/128.
func HostPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}
