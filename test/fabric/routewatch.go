package fabric

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
)

// maxWatchedLines bounds what a RouteWatch keeps: the oldest lines go.
const maxWatchedLines = 20000

// RouteWatch records a namespace's kernel route and nexthop changes, each
// line stamped with its time (ip -ts monitor route nexthop), until Stop.
type RouteWatch struct {
	cmd  *exec.Cmd
	done chan struct{}
	stop sync.Once

	mu    sync.Mutex
	lines []string
}

// WatchRoutes starts recording ns's route changes. The recording ends with
// Stop or with ctx.
func WatchRoutes(ctx context.Context, ns *Namespace) (*RouteWatch, error) {
	args := []string{"-ts", "monitor", "route", "nexthop"}
	if !ns.isRoot() {
		args = append([]string{"-n", ns.Name}, args...)
	}
	w := &RouteWatch{cmd: exec.CommandContext(ctx, "ip", args...), done: make(chan struct{})}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("ip monitor in %s: %w", ns, err)
	}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.add(sc.Text())
		}
		_ = w.cmd.Wait()
	}()
	return w, nil
}

// add records a line of ip's output. A multipath route's next hops come
// on lines of their own, indented: they join the route's line.
func (w *RouteWatch) add(line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, " ") {
		if n := len(w.lines); n > 0 {
			w.lines[n-1] += " " + strings.TrimSpace(line)
			return
		}
	}
	if len(w.lines) == maxWatchedLines {
		w.lines = w.lines[1:]
	}
	w.lines = append(w.lines, line)
}

// Stop ends the recording; Lines still reads it.
func (w *RouteWatch) Stop() {
	w.stop.Do(func() { _ = w.cmd.Process.Kill() })
	<-w.done
}

// Lines returns the lines recorded so far. A route through a nexthop
// group shows as "nhid N" and the group's own changes as "id N group …"
// lines.
func (w *RouteWatch) Lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.lines)
}
