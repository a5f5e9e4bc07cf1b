package bgprouter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// apiEnv names the unix socket on which a router process serves GoBGP's
// API. A test binary that imports this package and finds it set in its
// environment is not a test run but a router: [startProcess] runs the
// test binary itself again with it set, so that no binary has to be built
// and nothing is left on the machine.
const apiEnv = "BMCCM_BGPROUTER_API"

func init() {
	if sock := os.Getenv(apiEnv); sock != "" {
		if err := serveRouter(sock); err != nil {
			fmt.Fprintln(os.Stderr, "bgprouter:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// serveRouter is the router process: one GoBGP server, its API on the unix
// socket sock, until SIGTERM or SIGINT.
func serveRouter(sock string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s := server.NewBgpServer(server.GrpcListenAddress("unix://" + sock))
	// Serve also serves the API; GoBGP v3's Serve loop has no exit, the
	// process's end ends it.
	go s.Serve()
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := s.StopBgp(stopCtx, &api.StopBgpRequest{}); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	return nil
}

// process is a router process and the API client that drives it.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	conn *grpc.ClientConn
	api  api.GobgpApiClient
	log  string
}

// startupTimeout bounds the wait for the router's API socket.
const startupTimeout = time.Minute

// stopGrace is how long a router has to end after SIGTERM.
const stopGrace = 10 * time.Second

// startProcess starts a router process and connects to its API; t.Cleanup
// stops it (and prints its log if the test failed).
func startProcess(t testing.TB) (*process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// Not t.TempDir(): a unix socket's path must stay short.
	dir, err := os.MkdirTemp("", "bgprouter-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	p := &process{done: make(chan struct{}), log: filepath.Join(dir, "router.log")}
	out, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	p.cmd = exec.Command(self)
	p.cmd.Env = append(os.Environ(), apiEnv+"="+sock)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	// The router ends with the test process, also when that is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the router process: %w", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	// Registered after RemoveAll's cleanup, so run before it.
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			if b, err := os.ReadFile(p.log); err == nil && len(b) > 0 {
				t.Logf("bgprouter log:\n%s", tail(b, 4000))
			}
		}
	})
	err = fabric.Eventually(context.Background(), startupTimeout, 20*time.Millisecond, func() error {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			return fmt.Errorf("%w: %s", errRouterExited, b)
		default:
		}
		_, err := os.Stat(sock)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("router API socket: %w", err)
	}
	if p.conn, err = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		// A call waits (within its deadline) for the socket to accept.
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true))); err != nil {
		return nil, fmt.Errorf("connecting to the router's API: %w", err)
	}
	p.api = api.NewGobgpApiClient(p.conn)
	return p, nil
}

var errRouterExited = errors.New("the router process exited")

// stop ends the router: SIGTERM, SIGKILL after stopGrace, and waits.
func (p *process) stop() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
	fabric.Terminate(p.cmd.Process, p.done, stopGrace)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
