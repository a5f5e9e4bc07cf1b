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
	"sync"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// Result is one request of lbprobe.
type Result struct {
	Seq  int     `json:"seq"`
	Node string  `json:"node,omitempty"`
	Err  string  `json:"err,omitempty"`
	MS   float64 `json:"ms"`
	// Start is when the request began.
	Start time.Time `json:"start"`
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

// probeBudget bounds a loop of count requests: each takes at most
// timeout, plus interval, plus a generous margin for a busy machine.
func probeBudget(count int, interval, timeout time.Duration) time.Duration {
	return time.Duration(count)*(interval+timeout) + 60*time.Second
}

// Probe sends count requests from the client and returns their results.
func (l *Lab) Probe(ctx context.Context, url string, count int, interval, timeout time.Duration) (Results, error) {
	run, err := l.StartProbe(ctx, url, count, interval, timeout)
	if err != nil {
		return nil, err
	}
	return run.Wait()
}

// ProbeRun is a request loop of lbprobe running in the client namespace.
type ProbeRun struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	stderr bytes.Buffer
	done   chan struct{} // closed when the output is read to its end
	err    error         // of reading the output; set before done closes

	mu      sync.Mutex
	results Results
}

// StartProbe starts a loop of count requests from the client, each with
// timeout, interval apart; its results arrive as lbprobe answers them.
func (l *Lab) StartProbe(ctx context.Context, url string, count int, interval, timeout time.Duration) (*ProbeRun, error) {
	ctx, cancel := context.WithTimeout(ctx, probeBudget(count, interval, timeout))
	r := &ProbeRun{cancel: cancel, done: make(chan struct{})}
	r.cmd = l.ProbeCmd(ctx, url, count, interval, timeout)
	r.cmd.Stderr = &r.stderr
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := r.cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("lbprobe: %w", err)
	}
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			res, err := parseResult(sc.Bytes())
			if err != nil {
				r.err = err
				continue
			}
			r.mu.Lock()
			r.results = append(r.results, res)
			r.mu.Unlock()
		}
		if err := sc.Err(); err != nil && r.err == nil {
			r.err = err
		}
	}()
	return r, nil
}

// Results returns the results so far.
func (r *ProbeRun) Results() Results {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.results)
}

// WaitAnswered waits until n requests have been answered (the loop
// reaches the service), or fails when the loop ends first or timeout
// passes.
func (r *ProbeRun) WaitAnswered(ctx context.Context, n int, timeout time.Duration) error {
	return fabric.Eventually(ctx, timeout, 10*time.Millisecond, func() error {
		answered := len(r.Results()) - len(r.Results().Failed())
		if answered >= n {
			return nil
		}
		select {
		case <-r.done:
			return fmt.Errorf("the request loop ended with %d answers, want %d", answered, n)
		default:
		}
		return fmt.Errorf("%d requests answered, want %d", answered, n)
	})
}

// Stop ends the loop early (its process is killed) and waits for it.
func (r *ProbeRun) Stop() {
	r.cancel()
	_, _ = r.Wait()
}

// Wait waits for the loop's end and returns all its results.
func (r *ProbeRun) Wait() (Results, error) {
	defer r.cancel()
	<-r.done
	err := r.cmd.Wait()
	rs := r.Results()
	if err != nil {
		return rs, fmt.Errorf("lbprobe: %w: %s", err, r.stderr.String())
	}
	return rs, r.err
}

// ParseResults parses lbprobe's output.
func ParseResults(out []byte) (Results, error) {
	var rs Results
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		r, err := parseResult(sc.Bytes())
		if err != nil {
			return rs, err
		}
		rs = append(rs, r)
	}
	return rs, sc.Err()
}

func parseResult(line []byte) (Result, error) {
	var r Result
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("lbprobe output %q: %w", line, err)
	}
	return r, nil
}

// NextHops returns the next hops of the ToR's kernel route for prefix
// (none when there is no route), sorted.
func (r *Rack) NextHops(ctx context.Context, prefix netip.Prefix) ([]netip.Addr, error) {
	return nextHops(ctx, r.NS, prefix)
}

// HostPrefix is addr/32 or addr/128.
func HostPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}

// nextHops returns the distinct next hops of ns's kernel routes for
// prefix, sorted; none when there is no route.
func nextHops(ctx context.Context, ns *fabric.Namespace, prefix netip.Prefix) ([]netip.Addr, error) {
	routes, err := fabric.Routes(ctx, ns, prefix)
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

// ClientRouted returns nil once the client's kernel has a route for vip
// through every ToR (the ECMP route the client's requests take), and an
// error saying what it has otherwise. IPv6 next hops are the ToRs'
// link-local addresses (FRR installs those for eBGP neighbors on a shared
// LAN), so for IPv6 the number of distinct next hops is checked.
func (l *Lab) ClientRouted(ctx context.Context, vip netip.Addr) error {
	got, err := nextHops(ctx, l.Client, HostPrefix(vip))
	if err != nil {
		return err
	}
	var want []netip.Addr
	for _, r := range l.Racks {
		want = append(want, r.Core4)
	}
	slices.SortFunc(want, func(a, b netip.Addr) int { return a.Compare(b) })
	if vip.Is4() && !slices.Equal(got, want) || vip.Is6() && len(got) != len(l.Racks) {
		return fmt.Errorf("client: route for %s via %v, want one next hop per ToR (%d)", vip, got, len(l.Racks))
	}
	return nil
}

// NodeAnswers returns nil once node n itself answers HTTP at url with its
// name (its agent has bound the VIP and listens on the port), asked from
// inside its own namespace.
func (l *Lab) NodeAnswers(ctx context.Context, n *Node, url string) error {
	out, err := n.NS.Exec(ctx, l.Opts.ProbeBinary, "--url="+url, "--count=1", "--timeout=2s")
	if err != nil {
		return err
	}
	rs, err := ParseResults(out)
	if err != nil {
		return err
	}
	if len(rs) != 1 || rs[0].Err != "" || rs[0].Node != n.Name {
		return fmt.Errorf("%s: request to %s from the node itself: %+v", n.Name, url, rs)
	}
	return nil
}
