// Command pause is the lab's pod sandbox process (the pause image): it
// holds the pod's namespaces open until SIGTERM or SIGINT, then exits 0.
// As PID 1 of a pod that shares its process namespace it also reaps the
// children that end up orphaned under it. Built static (CGO off) into the
// lab's pause image by test/images.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	children := make(chan os.Signal, 1)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			reap()
		}
	}
}

// reap waits for every child that has exited, without blocking.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
