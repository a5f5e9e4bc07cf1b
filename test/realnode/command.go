package realnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/lab"
)

// The cluster as a command (hack/cluster up, serve, down, status), as
// test/lab's: a detached server process builds the cluster and holds its
// processes; up waits for it, down stops it. The state file is test/lab's.

// launchTimeout bounds Launch's wait for the server: a cold cluster takes
// minutes on a busy machine.
const launchTimeout = 20 * time.Minute

// Launch starts serve (a command line running [Serve]) detached and waits
// until the cluster is ready, copying the server's log (<Dir>.log) to w.
func Launch(o Options, serve []string, w io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("up needs root (namespaces, cgroups, mounts)")
	}
	if err := lab.CheckDir(o.Dir); err != nil {
		return err
	}
	if st, err := lab.ReadState(o.Dir); err == nil && st.ServerPID != 0 && syscall.Kill(st.ServerPID, 0) == nil {
		return fmt.Errorf("a cluster runs already (pid %d); down first", st.ServerPID)
	}
	if err := Cleanup(o.Prefix, o.Dir); err != nil {
		return fmt.Errorf("removing an earlier cluster: %w", err)
	}
	if err := lab.ClaimDir(o.Dir); err != nil {
		return err
	}
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
	if err := lab.WriteState(o.Dir, lab.State{Prefix: o.Prefix, ServerPID: cmd.Process.Pid}); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(launchTimeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	shown := 0
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("cluster serve exited (%v):\n%s", err, b[shown:])
		case <-deadline:
			return fmt.Errorf("cluster not ready after %s; see %s, then down", launchTimeout, logPath)
		case <-tick.C:
		}
		b, _ := os.ReadFile(logPath)
		if len(b) > shown {
			_, _ = w.Write(b[shown:])
			shown = len(b)
		}
		if st, err := lab.ReadState(o.Dir); err == nil && st.Ready {
			return nil
		}
	}
}

// Serve builds the cluster and holds it until SIGTERM, SIGINT or SIGHUP,
// then takes it down.
func Serve(o Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	c, err := Up(ctx, o)
	if err != nil {
		return err
	}
	st := lab.State{Prefix: o.Prefix, ServerPID: os.Getpid(), Ready: true, Kubeconfig: c.Kubeconfig}
	if err := lab.WriteState(o.Dir, st); err != nil {
		_ = c.Down()
		return err
	}
	o.logf("up; kubeconfig %s", c.Kubeconfig)
	<-ctx.Done()
	o.logf("going down")
	return c.Down()
}

// Stop stops the server (SIGTERM; SIGKILL after a minute) and removes
// whatever is left, also after a crash.
func Stop(o Options) error {
	if err := lab.CheckDir(o.Dir); err != nil {
		return err
	}
	if st, err := lab.ReadState(o.Dir); err == nil {
		if st.Prefix != "" {
			o.Prefix = st.Prefix
		}
		if pid := st.ServerPID; pid != 0 && syscall.Kill(pid, syscall.SIGTERM) == nil {
			o.logf("stopping the cluster (pid %d)", pid)
			_ = waitFor(context.Background(), time.Minute, func() error {
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
	if err := Cleanup(o.Prefix, o.Dir); err != nil {
		return err
	}
	if err := os.Remove(o.Dir + ".log"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	o.logf("down")
	return nil
}
