package lab

import (
	"context"
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

// server is the lab's detached server.
func server(o Options) Server {
	return Server{Dir: o.Dir, State: State{Prefix: o.Prefix, Slot: o.Slot}, ReadyTimeout: readyTimeout, Logf: o.Logf,
		Cleanup: func(st State) error { return Cleanup(st.Prefix, o.Dir, st.Slot) }}
}

// Launch starts the command line serve (a program that runs [Serve] with
// o, such as "lab serve") detached and waits until the lab is ready,
// copying the server's output (kept in <Dir>.log) to w.
func Launch(o Options, serve []string, w io.Writer) error {
	return server(o).Launch(serve, w)
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

// Stop stops the lab's server and removes whatever is left, also after a
// crash ([Server.Stop]).
func Stop(o Options) error { return server(o).Stop(stopTimeout) }

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
