// Package fabric builds small test networks out of Linux network
// namespaces: namespaces, veth pairs, addresses, FRR routers running in a
// namespace, and readers for their state (vtysh JSON, kernel routes with
// ip -j). Every object a test creates is removed by t.Cleanup, also when
// the test fails; Cleanup removes leftovers of a crashed run by name
// prefix.
//
// It needs root, iproute2 and, for routers, FRR (zebra and bgpd in
// /usr/lib/frr, vtysh). Require fails the test when CI=true and these are
// missing, and skips it otherwise.
//
// Use only documentation addresses: 192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24 and 2001:db8::/32.
package fabric

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FRRDir holds the FRR daemons.
var FRRDir = "/usr/lib/frr"

// commandTimeout bounds every ip and vtysh invocation.
const commandTimeout = 30 * time.Second

// Require checks that the test can build a fabric: root, iproute2 and,
// with frr, the FRR daemons and vtysh. When something is missing the test
// fails if CI=true (CI must run these tests) and is skipped otherwise.
func Require(t testing.TB, frr bool) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (iproute2)")
	}
	if frr {
		for _, d := range []string{"zebra", "bgpd"} {
			if _, err := os.Stat(FRRDir + "/" + d); err != nil {
				missing = append(missing, FRRDir+"/"+d)
			}
		}
		if _, err := exec.LookPath("vtysh"); err != nil {
			missing = append(missing, "vtysh")
		}
	}
	RequireAll(t, "network fabric test", missing)
}

// RequireAll fails the test when CI=true, and skips it otherwise, when
// anything is missing, naming what test needs.
func RequireAll(t testing.TB, test string, missing []string) {
	t.Helper()
	if len(missing) == 0 {
		return
	}
	msg := test + " needs " + strings.Join(missing, ", ")
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: these tests must run in CI)")
	}
	t.Skip(msg)
}

// UniqueName returns prefix followed by 6 random hex digits. Keep prefix
// short: interface names derived from it must fit 15 bytes.
func UniqueName(prefix string) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// run runs a command and returns its standard output; the error carries
// the command and its standard error.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Namespace is a network namespace. The zero or nil Namespace is the root
// namespace, where the test process runs.
type Namespace struct {
	Name string
}

// Root is the root namespace.
var Root *Namespace

// NewNamespace creates a namespace with lo up. t.Cleanup kills every
// process left in it and deletes it.
func NewNamespace(t testing.TB, name string) *Namespace {
	t.Helper()
	if _, err := run(context.Background(), "ip", "netns", "add", name); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	ns := &Namespace{Name: name}
	t.Cleanup(func() {
		if err := DeleteNamespace(name); err != nil {
			t.Errorf("deleting namespace %s: %v", name, err)
		}
	})
	if _, err := ns.IP(context.Background(), "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	return ns
}

func (n *Namespace) isRoot() bool { return n == nil || n.Name == "" }

func (n *Namespace) String() string {
	if n.isRoot() {
		return "root"
	}
	return n.Name
}

// IP runs ip with args in the namespace.
func (n *Namespace) IP(ctx context.Context, args ...string) ([]byte, error) {
	if !n.isRoot() {
		args = append([]string{"-n", n.Name}, args...)
	}
	return run(ctx, "ip", args...)
}

// Exec runs a command in the namespace.
func (n *Namespace) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	if n.isRoot() {
		return run(ctx, name, args...)
	}
	return run(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Command returns an unstarted command that runs in the namespace.
func (n *Namespace) Command(name string, args ...string) *exec.Cmd {
	if n.isRoot() {
		return exec.Command(name, args...)
	}
	// ip netns exec execs the program after setns: the PID is the
	// program's.
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// DeleteNamespace kills the processes in the namespace and deletes it.
// Deleting a namespace also deletes its veth ends and their peers.
func DeleteNamespace(name string) error {
	ctx := context.Background()
	var errs []error
	if out, err := run(ctx, "ip", "netns", "pids", name); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				killWait(pid, 5*time.Second)
			}
		}
	}
	if _, err := run(ctx, "ip", "netns", "del", name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killWait sends SIGTERM, then SIGKILL if the process is still there after
// grace.
func killWait(pid int, grace time.Duration) {
	if syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// Veth creates a veth pair: end a in namespace na, end b in namespace nb
// (nil: root), both up. t.Cleanup deletes it (deleting one end deletes
// both; a namespace's deletion may have done it already).
func Veth(t testing.TB, a string, na *Namespace, b string, nb *Namespace) {
	t.Helper()
	ctx := context.Background()
	args := []string{"link", "add", a, "type", "veth", "peer", "name", b}
	if !nb.isRoot() {
		args = append(args, "netns", nb.Name)
	}
	if _, err := na.IP(ctx, args...); err != nil {
		t.Fatalf("creating veth %s-%s: %v", a, b, err)
	}
	t.Cleanup(func() {
		if _, err := na.IP(ctx, "link", "show", a); err != nil {
			return // gone with its namespace
		}
		if _, err := na.IP(ctx, "link", "del", a); err != nil {
			t.Errorf("deleting veth %s: %v", a, err)
		}
	})
	for _, e := range []struct {
		ns  *Namespace
		dev string
	}{{na, a}, {nb, b}} {
		if _, err := e.ns.IP(ctx, "link", "set", e.dev, "up"); err != nil {
			t.Fatal(err)
		}
	}
}

// AddAddr adds addr (with its prefix length) to dev in ns. IPv6
// addresses skip duplicate address detection, so that they are usable at
// once.
func AddAddr(t testing.TB, ns *Namespace, dev string, addr netip.Prefix) {
	t.Helper()
	args := []string{"addr", "add", addr.String(), "dev", dev}
	if addr.Addr().Is6() {
		args = append(args, "nodad")
	}
	if _, err := ns.IP(context.Background(), args...); err != nil {
		t.Fatal(err)
	}
}

// Route is a kernel route as ip -j route prints it.
type Route struct {
	Dst      string         `json:"dst"`
	Gateway  string         `json:"gateway"`
	Dev      string         `json:"dev"`
	Protocol string         `json:"protocol"`
	Nexthops []RouteNexthop `json:"nexthops"`
}

// RouteNexthop is one next hop of a multipath route.
type RouteNexthop struct {
	Gateway string `json:"gateway"`
	Dev     string `json:"dev"`
	Weight  int    `json:"weight"`
}

// Gateways returns the route's next hops, for single and multipath
// routes alike.
func (r Route) Gateways() []netip.Addr {
	var out []netip.Addr
	if a, err := netip.ParseAddr(r.Gateway); err == nil {
		out = append(out, a)
	}
	for _, nh := range r.Nexthops {
		if a, err := netip.ParseAddr(nh.Gateway); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// Routes returns the kernel routes of the main table in ns whose
// destination is exactly dst.
func Routes(ctx context.Context, ns *Namespace, dst netip.Prefix) ([]Route, error) {
	fam := "-4"
	if dst.Addr().Is6() {
		fam = "-6"
	}
	out, err := ns.IP(ctx, "-j", fam, "route", "show", "exact", dst.String())
	if err != nil {
		return nil, err
	}
	var routes []Route
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("parsing ip -j route: %w: %s", err, out)
	}
	return routes, nil
}

// Cleanup removes what a crashed test run left behind: namespaces whose
// name starts with prefix (after killing their processes) and root
// namespace links whose name starts with prefix. Use a prefix that only
// your tests use: concurrent runs of those tests lose their fabric.
func Cleanup(prefix string) error {
	if prefix == "" {
		return errors.New("fabric: refusing to clean up without a prefix")
	}
	ctx := context.Background()
	var errs []error
	out, err := run(ctx, "ip", "-j", "netns", "list")
	if err != nil {
		return err
	}
	var nss []struct {
		Name string `json:"name"`
	}
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &nss); err != nil {
			return fmt.Errorf("parsing ip -j netns list: %w", err)
		}
	}
	for _, ns := range nss {
		if strings.HasPrefix(ns.Name, prefix) {
			if err := DeleteNamespace(ns.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	out, err = run(ctx, "ip", "-j", "link", "show")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return errors.Join(append(errs, fmt.Errorf("parsing ip -j link: %w", err))...)
	}
	for _, l := range links {
		if !strings.HasPrefix(l.Name, prefix) {
			continue
		}
		if _, err := run(ctx, "ip", "link", "show", "dev", l.Name); err != nil {
			continue // deleted with its peer
		}
		if _, err := run(ctx, "ip", "link", "del", l.Name); err != nil {
			// The kernel destroys a deleted namespace, and the veths
			// whose peer was in it, in the background: such a link can
			// vanish between the check above and the delete.
			if !strings.Contains(err.Error(), "Cannot find device") {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Eventually calls f every interval until it returns nil or timeout has
// passed, and returns f's last error. The number of calls is bounded by
// timeout/interval + 1.
func Eventually(ctx context.Context, timeout, interval time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-t.C:
		}
	}
}

// CreateNamespace creates a namespace with lo up, for programs without a
// testing.TB (the lab); the caller deletes it with DeleteNamespace.
func CreateNamespace(ctx context.Context, name string) (*Namespace, error) {
	if _, err := run(ctx, "ip", "netns", "add", name); err != nil {
		return nil, fmt.Errorf("creating namespace: %w", err)
	}
	ns := &Namespace{Name: name}
	if _, err := ns.IP(ctx, "link", "set", "lo", "up"); err != nil {
		return ns, err
	}
	return ns, nil
}
