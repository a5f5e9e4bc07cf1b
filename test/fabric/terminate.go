package fabric

import (
	"os"
	"syscall"
	"time"
)

// Terminate ends a child process the test started: SIGTERM, SIGKILL if it
// has not ended after grace, then waits until done is closed (by the
// goroutine that waits for the process). A process that has ended already
// is left alone.
func Terminate(p *os.Process, done <-chan struct{}, grace time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.Kill()
		<-done
	}
}
