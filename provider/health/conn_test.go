package health

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// closeEach makes the server close the connection after every answer
// ("Connection: close"), as some proxies do.
func closeEach(s *httptest.Server) {
	h := s.Config.Handler
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		h.ServeHTTP(w, r)
	})
}

// idleTimeout makes the server close a connection idle for d.
func idleTimeout(d time.Duration) func(*httptest.Server) {
	return func(s *httptest.Server) { s.Config.IdleTimeout = d }
}

// runChecker runs a checker of cfg over targets until stop is called or
// the test ends. After stop, no probe is under way and no connection is
// kept.
func runChecker(t *testing.T, cfg Config, targets map[string]netip.AddrPort) (c *Checker, stop func()) {
	t.Helper()
	c = NewChecker(cfg, func() {})
	c.SetTargets(targets)
	return c, runUntilStopped(t, c)
}

// TestConnectionReuse: a node's probes share a kept-alive connection, a
// new one every freshEvery probes; a node that closes its connections,
// after each answer or when idle, is probed just as well, without one
// failed probe (a threshold of 1 would flip it at the first).
func TestConnectionReuse(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []func(*httptest.Server)
		// perConn is the number of requests each connection carries, 0
		// when it is not predictable.
		perConn int64
	}{
		{name: "kept alive: a new connection every freshEvery probes", perConn: freshEvery},
		{name: "Connection: close after each answer: a new connection each", opts: []func(*httptest.Server){closeEach}, perConn: 1},
		// The server closes the idle connection 5 ms after an answer, the
		// prober comes back 50 ms later: it finds the connection closed
		// before using it, or, when the close comes late on a busy
		// machine, while using it, and then dials.
		{name: "the node closes idle connections sooner than the interval", opts: []func(*httptest.Server){idleTimeout(5 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, always(http.StatusOK), tc.opts...)
			// A timeout longer than the interval (Parse refuses it, the
			// Checker copes): with a threshold of 1, an answer made late
			// by a busy machine's scheduler would flip the node.
			cfg := testConfig(tick, 1, 1)
			cfg.Timeout = 10 * tick
			c, stop := runChecker(t, cfg, map[string]netip.AddrPort{"a": s.addr})
			waitRequests(t, s, 4*freshEvery+1)
			stop()
			n, conns := s.requests.Load(), s.conns.Load()
			if !c.Healthy("a") {
				t.Errorf("Healthy(a) = false after %d requests over %d connections, want true: no probe may fail", n, conns)
			}
			if tc.perConn == 0 {
				return
			}
			// A connection dialled just as Run ended may have carried no
			// request.
			if want := (n + tc.perConn - 1) / tc.perConn; conns < want || conns > want+1 {
				t.Errorf("%d requests over %d connections, want %d (one per %d requests)", n, conns, want, tc.perConn)
			}
		})
	}
}

// TestFailureClosesConnection: the probe after a failed one comes over a
// new connection, and the probes after it reuse that one.
func TestFailureClosesConnection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []int
		// wantNew[i] tells whether request i+1 comes over another
		// connection than request i.
		wantNew []bool
	}{
		{
			name:    "503",
			answers: []int{http.StatusOK, http.StatusOK, http.StatusServiceUnavailable, http.StatusOK, http.StatusOK},
			wantNew: []bool{true, false, false, true, false},
		},
		{
			// The third request starts while the second hangs on the kept
			// connection: it dials. What the fourth uses depends on when
			// the second's timeout comes.
			name:    "no answer",
			answers: []int{http.StatusOK, hang, http.StatusOK},
			wantNew: []bool{true, false, true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, func(n int64) int {
				if int(n) <= len(tc.answers) {
					return tc.answers[n-1]
				}
				return http.StatusOK
			})
			cfg := testConfig(4*tick, 3, 3)
			cfg.Timeout = 3 * tick // the fast probe comes 75 ms after a hanging one
			_, stop := runChecker(t, cfg, map[string]netip.AddrPort{"a": s.addr})
			waitRequests(t, s, int64(len(tc.wantNew)))
			stop()
			s.mu.Lock()
			defer s.mu.Unlock()
			for i, want := range tc.wantNew {
				if got := i == 0 || s.remotes[i] != s.remotes[i-1]; got != want {
					t.Errorf("request %d (answer %d) from %s after %s: new connection = %v, want %v", i+1, tc.answers[i], s.remotes[i], s.remotes[max(i-1, 0)], got, want)
				}
			}
		})
	}
}

// stuckListener stops accepting connections when stuck is set: the kernel
// still completes their handshake, but they are never served, as when a
// kube-proxy's accept queue is stuck.
type stuckListener struct {
	net.Listener
	stuck atomic.Bool

	mu   sync.Mutex
	held []net.Conn
}

func (l *stuckListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.stuck.Load() {
			return c, err
		}
		l.mu.Lock()
		l.held = append(l.held, c)
		l.mu.Unlock()
	}
}

func (l *stuckListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.held {
		c.Close()
	}
	return l.Listener.Close()
}

// TestNewConnectionsRefused: a node that accepts no new connection while
// its kept-alive connection still answers is found unhealthy within
// freshEvery × Interval + Timeout + (UnhealthyThreshold−1) × Timeout/2.
func TestNewConnectionsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		// stop makes l accept no more connections; the connections it
		// has accepted go on.
		stop func(l *stuckListener)
	}{
		{name: "listener closed: refused", stop: func(l *stuckListener) { l.Listener.Close() }},
		{name: "accept queue stuck: no answer", stop: func(l *stuckListener) { l.stuck.Store(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &stuckListener{Listener: listen(t)}
			s := serveOn(t, l, always(http.StatusOK))
			cfg := testConfig(4*tick, 2, 2)
			cfg.Timeout = 3 * tick // answers over the kept connection come in time
			c, _ := runChecker(t, cfg, map[string]netip.AddrPort{"a": s.addr})
			// Right after the first answer: its connection has
			// freshEvery−1 probes to go.
			waitRequests(t, s, 1)
			tc.stop(l)
			start := time.Now()
			before := s.requests.Load()
			waitFor(t, "a to turn unhealthy", func() bool { return !c.Healthy("a") })
			took := time.Since(start)
			bound := freshEvery*cfg.Interval + cfg.Timeout + time.Duration(cfg.UnhealthyThreshold-1)*cfg.fastInterval()
			t.Logf("unhealthy %s after new connections stopped (bound %s)", took.Round(time.Millisecond), bound)
			if took > bound+2*time.Second {
				t.Errorf("unhealthy %s after new connections stopped, want at most %s", took, bound)
			}
			// The kept connection went on answering meanwhile: the node
			// did look healthy over it.
			if n := s.requests.Load() - before; n < freshEvery-2 {
				t.Errorf("%d answers over the kept connection after new connections stopped, want about %d", n, freshEvery-1)
			}
			if n := s.conns.Load(); n != 1 {
				t.Errorf("the server served %d connections, want 1", n)
			}
		})
	}
}

// TestProbeAnswers: how an answer's form decides the probe's result and
// whether its connection carries the next probe. Each case is probed
// twice.
func TestProbeAnswers(t *testing.T) {
	big := strings.Repeat("x", 2*maxBodyBytes)
	for _, tc := range []struct {
		name      string
		handler   http.HandlerFunc
		wantErr   bool
		wantConns int64
	}{
		{
			name:      "200 with a length: reused",
			handler:   func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"nodeEligible": true}`) },
			wantConns: 1,
		},
		{
			name: "200 with a chunked body: reused",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, "ok")
				w.(http.Flusher).Flush()
				io.WriteString(w, "ok")
			},
			wantConns: 1,
		},
		{
			name:      "a body over the limit: success, not reused",
			handler:   func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, big) },
			wantConns: 2,
		},
		{
			name: "a header over the limit: failure",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("X-Big", big[:maxHeaderBytes])
			},
			wantErr: true, wantConns: 2,
		},
		{
			name: "HTTP/1.0, the body ends with the connection: not reused",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				c, _, err := w.(http.Hijacker).Hijack()
				if err != nil {
					return
				}
				defer c.Close()
				io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\nok")
			},
			wantConns: 2,
		},
		{
			name:      "503: failure, not reused",
			handler:   func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) },
			wantErr:   true,
			wantConns: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conns atomic.Int64
			srv := httptest.NewUnstartedServer(tc.handler)
			srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			t.Cleanup(srv.Close)
			ep := newEndpoint(netip.MustParseAddrPort(srv.Listener.Addr().String()), DefaultConfig())
			defer ep.close()
			for i := range 2 {
				if err := ep.probe(context.Background(), deadline); (err != nil) != tc.wantErr {
					t.Errorf("probe %d: %v, want error: %v", i+1, err, tc.wantErr)
				}
			}
			if n := conns.Load(); n != tc.wantConns {
				t.Errorf("2 probes over %d connections, want %d", n, tc.wantConns)
			}
		})
	}
}
