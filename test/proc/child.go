package proc

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Child is this test binary run again as a helper process that serves
// something the test process must not share its CPU with (healthz
// endpoints by the thousand), driven by a line protocol over the child's
// stdin (In) and stdout (Out).
type Child struct {
	cmd *exec.Cmd
	In  io.WriteCloser
	Out *bufio.Scanner
}

// StartChild runs this test binary again with only the test named test
// and env added to its environment: that test does the child's work when
// it sees env, nothing otherwise. The child must end when its stdin
// closes, which the test's cleanup does before it waits for the child; it
// is killed if the test process dies.
func StartChild(t testing.TB, test string, env ...string) *Child {
	t.Helper()
	c := &Child{cmd: exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v=false")}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stderr = os.Stderr
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var err error
	if c.In, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting %s in a child process: %v", test, err)
	}
	t.Cleanup(func() {
		_ = c.In.Close()
		_ = c.cmd.Wait()
	})
	c.Out = bufio.NewScanner(stdout)
	return c
}

// PID is the child's process ID.
func (c *Child) PID() int { return c.cmd.Process.Pid }
