package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// Server runs a lab as a detached server process that builds it and holds
// its processes (hack/lab, hack/cluster): Launch starts it and waits for it
// to be ready, Stop ends it and removes whatever is left.
type Server struct {
	// Dir is the lab's directory; the server's log is Dir.log, beside it
	// (a failed server removes the directory).
	Dir string
	// State is written when the server starts, with its pid.
	State State
	// Cleanup removes what a lab of State left behind, also after a crash.
	Cleanup func(State) error
	// ReadyTimeout bounds Launch's wait.
	ReadyTimeout time.Duration
	Logf         func(format string, args ...any)
}

func (s Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Launch starts the command line serve detached, in its own session, and
// waits until the state says ready, copying the server's log to w. A Dir
// that is not a lab's is refused before anything is touched; leftovers of
// an earlier lab in it are removed first.
func (s Server) Launch(serve []string, w io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("up needs root (namespaces)")
	}
	if err := CheckDir(s.Dir); err != nil {
		return err
	}
	if st, err := ReadState(s.Dir); err == nil && st.ServerPID != 0 && syscall.Kill(st.ServerPID, 0) == nil {
		return fmt.Errorf("a lab runs already (pid %d); down first", st.ServerPID)
	}
	if err := s.Cleanup(s.State); err != nil {
		return fmt.Errorf("removing an earlier lab: %w", err)
	}
	if err := ClaimDir(s.Dir); err != nil {
		return err
	}
	logPath := s.Dir + ".log"
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
	st := s.State
	st.ServerPID = cmd.Process.Pid
	if err := WriteState(s.Dir, st); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.logf("building (log: %s)", logPath)
	deadline := time.After(s.ReadyTimeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	shown := 0
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("serve exited (%v):\n%s", err, b[min(shown, len(b)):])
		case <-deadline:
			return fmt.Errorf("not ready after %s; see %s, then down", s.ReadyTimeout, logPath)
		case <-tick.C:
		}
		b, _ := os.ReadFile(logPath)
		if len(b) > shown {
			_, _ = w.Write(b[shown:])
			shown = len(b)
		}
		if st, err := ReadState(s.Dir); err == nil && st.Ready {
			s.logf("ready; kubeconfig %s", st.Kubeconfig)
			return nil
		}
	}
}

// Stop stops the server (SIGTERM, which takes the lab down; SIGKILL after
// grace) and removes whatever is left, also after a crash. A Dir that is
// not a lab's is refused before anything is touched: no pid from a state
// file there is signalled.
func (s Server) Stop(grace time.Duration) error {
	if err := CheckDir(s.Dir); err != nil {
		return err
	}
	st := s.State
	if saved, err := ReadState(s.Dir); err == nil {
		st = saved
		if pid := st.ServerPID; pid != 0 && syscall.Kill(pid, syscall.SIGTERM) == nil {
			s.logf("stopping the lab (pid %d)", pid)
			// Not our child: its end is seen by signal 0 only.
			_ = fabric.Eventually(context.Background(), grace, 100*time.Millisecond, func() error {
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
	if err := s.Cleanup(st); err != nil {
		return err
	}
	if err := os.Remove(s.Dir + ".log"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.logf("down")
	return nil
}
