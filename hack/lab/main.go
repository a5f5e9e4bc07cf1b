// Command lab builds, shows and removes the baremetal-ccm lab (see
// docs/lab.md):
//
//	go run ./hack/lab up       # as root
//	go run ./hack/lab status
//	go run ./hack/lab down
//
// up starts a detached server process (lab serve) that builds the lab and
// holds its processes; down stops it and removes whatever is left.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/hack/lab/lab"
	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

func main() {
	fs := flag.NewFlagSet("lab", flag.ExitOnError)
	dir := fs.String("dir", envOr("BMCCM_LAB_DIR", "/run/bmccm-lab"), "the lab's directory (state, logs, data)")
	prefix := fs.String("prefix", "bmlab-", "prefix of the lab's namespaces and links (at most 9 bytes)")
	slot := fs.Int("slot", 0, "core subnet 198.51.100.(128+16*slot)/28 (0..5)")
	binDir := fs.String("k8s-bin", os.Getenv("BMCCM_K8S_BIN"), "directory with kube-apiserver (default: hack/build-k8s.sh's cache)")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: lab [flags] up|down|status")
		fs.PrintDefaults()
	}
	if len(os.Args) < 2 {
		fs.Usage()
		os.Exit(2)
	}
	cmd := os.Args[1]
	_ = fs.Parse(os.Args[2:])
	o := lab.Options{Prefix: *prefix, Dir: *dir, Slot: *slot, BinDir: *binDir,
		Logf: func(f string, a ...any) { fmt.Printf("lab: "+f+"\n", a...) }}
	var err error
	switch cmd {
	case "up":
		err = up(o)
	case "serve":
		err = serve(o)
	case "down":
		err = down(o)
	case "status":
		err = status(o)
	default:
		fs.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func args(o lab.Options) []string {
	return []string{"--dir=" + o.Dir, "--prefix=" + o.Prefix, fmt.Sprintf("--slot=%d", o.Slot), "--k8s-bin=" + o.BinDir}
}

// up starts "lab serve" detached and waits until the lab is ready.
func up(o lab.Options) error {
	if os.Geteuid() != 0 {
		return errors.New("up needs root (network namespaces)")
	}
	if st, err := lab.ReadState(o.Dir); err == nil && st.ServerPID != 0 && syscall.Kill(st.ServerPID, 0) == nil {
		return fmt.Errorf("a lab runs already (pid %d); lab down first", st.ServerPID)
	}
	// Leftovers of an earlier run are removed first.
	if err := lab.Cleanup(o.Prefix, o.Dir, o.Slot); err != nil {
		return fmt.Errorf("removing an earlier lab: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// Beside the directory: a failed serve removes the directory.
	logPath := o.Dir + ".log"
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(self, append([]string{"serve"}, args(o)...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := lab.WriteState(o.Dir, lab.State{Prefix: o.Prefix, Slot: o.Slot, ServerPID: cmd.Process.Pid}); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Printf("lab: building (log: %s)\n", logPath)
	deadline := time.After(5 * time.Minute)
	shown := 0
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("lab serve exited (%v):\n%s", err, b)
		case <-deadline:
			return fmt.Errorf("lab not ready after 5 minutes; see %s, then lab down", logPath)
		case <-time.After(250 * time.Millisecond):
		}
		b, _ := os.ReadFile(logPath)
		if len(b) > shown {
			os.Stdout.Write(b[shown:])
			shown = len(b)
		}
		if st, err := lab.ReadState(o.Dir); err == nil && st.Ready {
			fmt.Printf("lab: ready; kubeconfig %s\n", st.Kubeconfig)
			return nil
		}
	}
}

// serve builds the lab and holds it until SIGTERM or SIGINT.
func serve(o lab.Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	l, err := lab.Up(ctx, o)
	if err != nil {
		return err
	}
	// Up rewrote the state; keep our pid in it.
	st, err := lab.ReadState(o.Dir)
	if err != nil {
		_ = l.Down()
		return err
	}
	st.ServerPID = os.Getpid()
	if err := lab.WriteState(o.Dir, st); err != nil {
		_ = l.Down()
		return err
	}
	fmt.Println("lab: up")
	<-ctx.Done()
	fmt.Println("lab: going down")
	return l.Down()
}

func down(o lab.Options) error {
	if st, err := lab.ReadState(o.Dir); err == nil {
		o.Prefix, o.Slot = st.Prefix, st.Slot
		if pid := st.ServerPID; pid != 0 && syscall.Kill(pid, syscall.SIGTERM) == nil {
			fmt.Printf("lab: stopping the lab (pid %d)\n", pid)
			for i := 0; i < 300 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			if syscall.Kill(pid, 0) == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// Whatever is left, also after a crash.
	if err := lab.Cleanup(o.Prefix, o.Dir, o.Slot); err != nil {
		return err
	}
	_ = os.Remove(o.Dir + ".log")
	fmt.Println("lab: down")
	return nil
}

func status(o lab.Options) error {
	st, err := lab.ReadState(o.Dir)
	if err != nil {
		fmt.Println("lab: not running")
		return nil
	}
	alive := st.ServerPID != 0 && syscall.Kill(st.ServerPID, 0) == nil
	fmt.Printf("lab: dir %s, prefix %s, ready %v, server pid %d running %v\n", o.Dir, st.Prefix, st.Ready, st.ServerPID, alive)
	if st.Kubeconfig != "" {
		fmt.Printf("kubeconfig: %s\n", st.Kubeconfig)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, st.Prefix) {
			fmt.Println("namespace:", strings.Fields(l)[0])
		}
	}
	if st.Ready {
		for _, r := range []string{"tor-a", "tor-b"} {
			f := &fabric.FRR{NS: &fabric.Namespace{Name: st.Prefix + r}, Dir: filepath.Join(o.Dir, "frr", "rack-"+strings.TrimPrefix(r, "tor-"))}
			if s, err := f.Vtysh(context.Background(), "show bgp summary"); err == nil {
				fmt.Printf("--- %s: show bgp summary\n%s", r, s)
			}
		}
	}
	return nil
}
