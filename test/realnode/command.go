package realnode

import (
	"context"
	"io"
	"os"
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

// server is the cluster's detached server.
func server(o Options) lab.Server {
	return lab.Server{Dir: o.Dir, State: lab.State{Prefix: o.Prefix}, ReadyTimeout: launchTimeout, Logf: o.Logf,
		Cleanup: func(st lab.State) error { return Cleanup(st.Prefix, o.Dir) }}
}

// Launch starts serve (a command line running [Serve]) detached and waits
// until the cluster is ready, copying the server's log (<Dir>.log) to w.
func Launch(o Options, serve []string, w io.Writer) error { return server(o).Launch(serve, w) }

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
func Stop(o Options) error { return server(o).Stop(time.Minute) }
