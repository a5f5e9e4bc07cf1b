package fabric

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FRR is an FRR instance (zebra and bgpd) running in a namespace, with its
// configuration, pid files, vty and zserv sockets and logs in its own
// directory. It does not use FRR's pathspace (-N): every path is explicit,
// so nothing is created under /etc/frr or /var/run/frr, and its vtys
// listen on unix sockets only.
type FRR struct {
	NS  *Namespace
	Dir string

	procs []*exec.Cmd
	waits []chan struct{}
}

// FRR runs as the frr user (root is not in FRR's vty group), which must
// be able to reach the directory.
const frrUser = "frr"

// startTimeout bounds the wait for a daemon's socket and for bgpd's vty:
// generous, since a busy machine can take many seconds to start them.
const startTimeout = time.Minute

// StartFRR writes bgpdConf and starts zebra and bgpd in ns, with dir (for
// example t.TempDir()) as their directory. It returns when bgpd answers on
// its vty. t.Cleanup stops both daemons; their logs are printed when the
// test failed.
func StartFRR(t testing.TB, ns *Namespace, dir, bgpdConf string) *FRR {
	t.Helper()
	f, err := startFRR(ns, dir, bgpdConf)
	if f != nil {
		t.Cleanup(func() {
			f.Stop()
			if t.Failed() {
				for _, name := range []string{"zebra.log", "bgpd.log", "zebra.out", "bgpd.out"} {
					if b, err := os.ReadFile(filepath.Join(f.Dir, name)); err == nil && len(b) > 0 {
						t.Logf("FRR %s %s:\n%s", ns, name, tail(b, 4000))
					}
				}
			}
		})
	}
	if err != nil {
		t.Fatalf("starting FRR in %s: %v", ns, err)
	}
	return f
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func startFRR(ns *Namespace, dir, bgpdConf string) (*FRR, error) {
	if err := makeReachable(dir); err != nil {
		return nil, err
	}
	hostname := "tor"
	if !ns.isRoot() {
		hostname = ns.Name
	}
	files := map[string]string{
		"zebra.conf": "hostname " + hostname + "\n",
		"bgpd.conf":  bgpdConf,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	f := &FRR{NS: ns, Dir: dir}
	common := func(daemon string) []string {
		return []string{
			"--vty_socket", dir,
			"-z", filepath.Join(dir, "zserv.api"),
			"-i", filepath.Join(dir, daemon+".pid"),
			"-f", filepath.Join(dir, daemon+".conf"),
			"-P", "0", // no vty TCP port
			"--log", "file:" + filepath.Join(dir, daemon+".log"),
			"-u", frrUser, "-g", frrUser,
		}
	}
	for _, d := range []struct {
		name  string
		ready string
	}{
		{"zebra", "zserv.api"},
		{"bgpd", "bgpd.vty"},
	} {
		out, err := os.Create(filepath.Join(dir, d.name+".out"))
		if err != nil {
			return f, err
		}
		cmd := ns.Command(filepath.Join(FRRDir, d.name), common(d.name)...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			out.Close()
			return f, fmt.Errorf("starting %s: %w", d.name, err)
		}
		out.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		f.procs = append(f.procs, cmd)
		f.waits = append(f.waits, done)
		sock := filepath.Join(dir, d.ready)
		err = Eventually(context.Background(), startTimeout, 50*time.Millisecond, func() error {
			select {
			case <-done:
				return errors.New(d.name + " exited")
			default:
			}
			_, err := os.Stat(sock)
			return err
		})
		if err != nil {
			b, _ := os.ReadFile(filepath.Join(dir, d.name+".out"))
			return f, fmt.Errorf("%s did not start: %w; output: %s", d.name, err, b)
		}
	}
	err := Eventually(context.Background(), startTimeout, 100*time.Millisecond, func() error {
		_, err := f.Vtysh(context.Background(), "show bgp summary json")
		return err
	})
	return f, err
}

// makeReachable lets the frr user into dir: it may create sockets and pid
// files in dir and traverse every parent.
func makeReachable(dir string) error {
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	for d := filepath.Dir(dir); d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
	}
	return nil
}

// Stop stops bgpd and zebra (SIGTERM, then SIGKILL after 5s) and waits
// for them.
func (f *FRR) Stop() {
	for i := len(f.procs) - 1; i >= 0; i-- {
		p := f.procs[i]
		if p.Process == nil {
			continue
		}
		_ = p.Process.Signal(syscall.SIGTERM)
		select {
		case <-f.waits[i]:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			<-f.waits[i]
		}
	}
	f.procs, f.waits = nil, nil
}

// Vtysh runs one vtysh command against this instance.
func (f *FRR) Vtysh(ctx context.Context, command string) (string, error) {
	out, err := run(ctx, "vtysh", "--vty_socket", f.Dir, "-c", command)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// VtyshJSON runs a vtysh command that prints JSON ("... json") and
// decodes its output into v.
func (f *FRR) VtyshJSON(ctx context.Context, command string, v any) error {
	out, err := f.Vtysh(ctx, command)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("vtysh %q: %w: %s", command, err, strings.TrimSpace(out))
	}
	return nil
}

// BGPNeighborState returns the state FRR reports for neighbor
// ("Established", "Active", ...).
func (f *FRR) BGPNeighborState(ctx context.Context, neighbor string) (string, error) {
	var out map[string]struct {
		State string `json:"bgpState"`
	}
	if err := f.VtyshJSON(ctx, "show bgp neighbors "+neighbor+" json", &out); err != nil {
		return "", err
	}
	n, ok := out[neighbor]
	if !ok {
		return "", fmt.Errorf("FRR does not know neighbor %s", neighbor)
	}
	return n.State, nil
}

// BGPPath is one path of a prefix as "show bgp <afi> unicast <prefix>
// json" reports it.
type BGPPath struct {
	Valid     bool                   `json:"valid"`
	Bestpath  struct{ Overall bool } `json:"bestpath"`
	Multipath bool                   `json:"multipath"`
	AddPathRx int                    `json:"addpathRxId"`
	Nexthops  []struct {
		IP   string `json:"ip"`
		Afi  string `json:"afi"`
		Used bool   `json:"used"`
	} `json:"nexthops"`
	Peer struct {
		PeerID string `json:"peerId"`
	} `json:"peer"`
	Community *struct {
		String string `json:"string"`
	} `json:"community"`
	// ExtendedCommunity is nil without extended communities; FRR shows
	// a link-bandwidth one as "LB:64512:125000 (1.000 Mbps)".
	ExtendedCommunity *struct {
		String string `json:"string"`
	} `json:"extendedCommunity"`
}

// BGPPaths returns FRR's paths for prefix (for example
// "203.0.113.10/32"); none when FRR has no route.
func (f *FRR) BGPPaths(ctx context.Context, prefix string) ([]BGPPath, error) {
	afi := "ipv4"
	if strings.Contains(prefix, ":") {
		afi = "ipv6"
	}
	var out struct {
		Prefix string    `json:"prefix"`
		Paths  []BGPPath `json:"paths"`
	}
	if err := f.VtyshJSON(ctx, "show bgp "+afi+" unicast "+prefix+" json", &out); err != nil {
		return nil, err
	}
	return out.Paths, nil
}

// NewFRR is StartFRR for programs without a testing.TB (the lab): it
// writes bgpdConf, starts zebra and bgpd in ns with dir as their
// directory and returns when bgpd answers on its vty. The caller stops it
// with Stop, also after an error (a non-nil FRR may hold processes).
func NewFRR(ns *Namespace, dir, bgpdConf string) (*FRR, error) {
	return startFRR(ns, dir, bgpdConf)
}

// UpdatesReceived returns how many BGP UPDATE messages FRR has received
// from neighbor ("messageStats.updatesRecv").
func (f *FRR) UpdatesReceived(ctx context.Context, neighbor string) (int, error) {
	var out map[string]struct {
		MessageStats struct {
			UpdatesRecv int `json:"updatesRecv"`
		} `json:"messageStats"`
	}
	if err := f.VtyshJSON(ctx, "show bgp neighbors "+neighbor+" json", &out); err != nil {
		return 0, err
	}
	n, ok := out[neighbor]
	if !ok {
		return 0, fmt.Errorf("FRR does not know neighbor %s", neighbor)
	}
	return n.MessageStats.UpdatesRecv, nil
}
