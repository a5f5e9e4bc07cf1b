package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// The lab as a command (hack/lab up, serve, down, status): a detached
// server process builds the lab and holds its processes; up waits for it,
// down stops it.

// readyTimeout bounds Launch's wait for the server.
const readyTimeout = 5 * time.Minute

// stopTimeout bounds Stop's wait for the server to take the lab down.
const stopTimeout = 30 * time.Second

// Launch starts the command line serve (a program that runs [Serve] with
// o, such as "lab serve") detached, in its own session, and waits until
// the lab is ready, copying the server's output (kept in <Dir>.log) to w.
// A Dir that is not the lab's is refused before anything is touched;
// leftovers of an earlier lab in it are removed first.
func Launch(o Options, serve []string, w io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("up needs root (network namespaces)")
	}
	if err := CheckDir(o.Dir); err != nil {
		return err
	}
	if st, err := ReadState(o.Dir); err == nil && st.ServerPID != 0 && syscall.Kill(st.ServerPID, 0) == nil {
		return fmt.Errorf("a lab runs already (pid %d); lab down first", st.ServerPID)
	}
	if err := Cleanup(o.Prefix, o.Dir, o.Slot); err != nil {
		return fmt.Errorf("removing an earlier lab: %w", err)
	}
	if err := ClaimDir(o.Dir); err != nil {
		return err
	}
	// Beside the directory: a failed serve removes the directory.
	logPath := o.Dir + ".log"
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(serve[0], serve[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := WriteState(o.Dir, State{Prefix: o.Prefix, Slot: o.Slot, ServerPID: cmd.Process.Pid}); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	o.logf("building (log: %s)", logPath)
	deadline := time.After(readyTimeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	shown := 0
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("lab serve exited (%v):\n%s", err, b)
		case <-deadline:
			return fmt.Errorf("lab not ready after %s; see %s, then lab down", readyTimeout, logPath)
		case <-tick.C:
		}
		b, _ := os.ReadFile(logPath)
		if len(b) > shown {
			_, _ = w.Write(b[shown:])
			shown = len(b)
		}
		if st, err := ReadState(o.Dir); err == nil && st.Ready {
			o.logf("ready; kubeconfig %s", st.Kubeconfig)
			return nil
		}
	}
}

// Serve builds the lab and holds it until SIGTERM, SIGINT or SIGHUP, then
// takes it down.
func Serve(o Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	l, err := Up(ctx, o)
	if err != nil {
		return err
	}
	// Up rewrote the state; keep our pid in it.
	st, err := ReadState(o.Dir)
	if err != nil {
		_ = l.Down()
		return err
	}
	st.ServerPID = os.Getpid()
	if err := WriteState(o.Dir, st); err != nil {
		_ = l.Down()
		return err
	}
	o.logf("up")
	<-ctx.Done()
	o.logf("going down")
	return l.Down()
}

// Stop stops the lab's server (SIGTERM, which takes the lab down; SIGKILL
// after stopTimeout) and removes whatever is left, also after a crash. A
// Dir that is not the lab's is refused before anything is touched: no pid
// from a state file there is signalled.
func Stop(o Options) error {
	if err := CheckDir(o.Dir); err != nil {
		return err
	}
	if st, err := ReadState(o.Dir); err == nil {
		o.Prefix, o.Slot = st.Prefix, st.Slot
		if pid := st.ServerPID; pid != 0 && syscall.Kill(pid, syscall.SIGTERM) == nil {
			o.logf("stopping the lab (pid %d)", pid)
			// Not our child: its end is seen by signal 0 only.
			_ = fabric.Eventually(context.Background(), stopTimeout, 100*time.Millisecond, func() error {
				if syscall.Kill(pid, 0) == nil {
					return fmt.Errorf("pid %d still runs", pid)
				}
				return nil
			})
			if syscall.Kill(pid, 0) == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// Whatever is left, also after a crash.
	if err := Cleanup(o.Prefix, o.Dir, o.Slot); err != nil {
		return err
	}
	if err := os.Remove(o.Dir + ".log"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	o.logf("down")
	return nil
}

// PrintStatus writes to w what runs of the lab in o.Dir.
func PrintStatus(w io.Writer, o Options) error {
	st, err := ReadState(o.Dir)
	if err != nil {
		fmt.Fprintln(w, "lab: not running")
		return nil
	}
	alive := st.ServerPID != 0 && syscall.Kill(st.ServerPID, 0) == nil
	fmt.Fprintf(w, "lab: dir %s, prefix %s, ready %v, server pid %d running %v\n", o.Dir, st.Prefix, st.Ready, st.ServerPID, alive)
	if st.Kubeconfig != "" {
		fmt.Fprintf(w, "kubeconfig: %s\n", st.Kubeconfig)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if st.Prefix != "" && strings.HasPrefix(l, st.Prefix) {
			fmt.Fprintln(w, "namespace:", strings.Fields(l)[0])
		}
	}
	if st.Ready {
		for _, r := range RackNets {
			letter := strings.TrimPrefix(r.Name, "rack-")
			f := &fabric.FRR{NS: &fabric.Namespace{Name: st.Prefix + "tor-" + letter}, Dir: filepath.Join(o.Dir, "frr", r.Name)}
			if s, err := f.Vtysh(context.Background(), "show bgp summary"); err == nil {
				fmt.Fprintf(w, "--- tor-%s: show bgp summary\n%s", letter, s)
			}
		}
	}
	return nil
}
