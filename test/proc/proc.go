// Package proc runs the long-lived processes of the test labs: each in its
// own process group, killed with the test binary (Pdeathsig), its output
// appended to a log file, restartable, stopped by PID only.
package proc

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is a process a lab started; its output goes to Log.
type Proc struct {
	Name string
	Log  string
	argv []string
	cmd  *exec.Cmd
	done chan struct{}
	// exitErr is cmd.Wait's result, written before done is closed.
	exitErr error
}

// Start starts the process (again).
func (p *Proc) Start() error {
	if p.Running() {
		return fmt.Errorf("%s runs already (pid %d)", p.Name, p.PID())
	}
	out, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	p.cmd = exec.Command(p.argv[0], p.argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.done = done
	cmd := p.cmd
	p.exitErr = nil
	go func() { err := cmd.Wait(); p.exitErr = err; close(done) }()
	return nil
}

// Running reports whether the process runs.
func (p *Proc) Running() bool {
	if p == nil || p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits.
func (p *Proc) Kill() {
	if !p.Running() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM, SIGKILL after 10 s, and waits.
func (p *Proc) Stop() {
	if !p.Running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// LogTail returns the last n lines of the log.
func (p *Proc) LogTail(n int) string {
	b, _ := os.ReadFile(p.Log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// New returns an unstarted process running argv with output appended to log.
func New(name, log string, argv ...string) *Proc {
	return &Proc{Name: name, Log: log, argv: argv}
}

// PID is the running process's ID (0 when not started).
func (p *Proc) PID() int {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitError is how the process ended (nil: exit status 0); call it after
// Done is closed.
func (p *Proc) ExitError() error { return p.exitErr }
