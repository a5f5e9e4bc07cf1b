// Command lbprobe sends a bounded number of HTTP requests to a URL, each on
// a new connection (so that ECMP hashing sees a new flow), and prints one
// JSON line per request:
// {"seq":1,"node":"bmlab-a1","ms":1.2,"start":"2026-12-02T00:18:06.917885Z"}.
// Run it in the lab's client namespace.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Result is one request's outcome.
type Result struct {
	Seq  int     `json:"seq"`
	Node string  `json:"node,omitempty"`
	Err  string  `json:"err,omitempty"`
	MS   float64 `json:"ms"`
	// Start is when the request began, to set beside other records of
	// the same moment (a router's route changes).
	Start time.Time `json:"start"`
}

func main() {
	var (
		url      = flag.String("url", "", "URL to request")
		count    = flag.Int("count", 100, "number of requests")
		interval = flag.Duration("interval", 0, "pause between requests")
		timeout  = flag.Duration("timeout", 2*time.Second, "timeout of one request")
		summary  = flag.Bool("summary", false, "print a table of answers per node instead of JSON lines")
	)
	flag.Parse()
	if *url == "" || *count <= 0 || *count > 100000 {
		fmt.Fprintln(os.Stderr, "lbprobe: --url and 0 < --count <= 100000 are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	enc := json.NewEncoder(os.Stdout)
	perNode, perPod := map[string]int{}, map[string]int{}
	failed := 0
	for i := 1; i <= *count && ctx.Err() == nil; i++ {
		start := time.Now()
		r := Result{Seq: i, Start: start.UTC()}
		resp, err := client.Get(*url)
		if err == nil {
			b, rerr := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("status %s", resp.Status)
			default:
				r.Node = strings.TrimSpace(string(b))
			}
		}
		if err != nil {
			r.Err = err.Error()
		}
		r.MS = float64(time.Since(start).Microseconds()) / 1000
		if r.Err != "" {
			failed++
		} else {
			node, pod := answerOf(r.Node)
			perNode[node]++
			if pod != "" {
				perPod[pod]++
			}
		}
		if !*summary {
			_ = enc.Encode(r)
		}
		if *interval > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(*interval):
			}
		}
	}
	if *summary {
		printSummary("NODE", perNode, failed)
		if len(perPod) > 0 {
			fmt.Println()
			printSummary("POD", perPod, failed)
		}
	}
}

// answerOf reads an answer: the lab agent's is the node's name, the
// real-node lab's netserver's a JSON object naming the pod and its node.
func answerOf(body string) (node, pod string) {
	var a struct {
		Pod  string `json:"pod"`
		Node string `json:"node"`
	}
	if json.Unmarshal([]byte(body), &a) == nil && a.Node != "" {
		return a.Node, a.Pod
	}
	return body, ""
}

// printSummary prints the answers per key (node or pod) and the failures,
// each with its share of all requests.
func printSummary(kind string, answers map[string]int, failed int) {
	keys := make([]string, 0, len(answers))
	total := failed
	width := 12
	for k, c := range answers {
		keys = append(keys, k)
		total += c
		width = max(width, len(k))
	}
	sort.Strings(keys)
	fmt.Printf("%-*s %8s %6s\n", width, kind, "ANSWERS", "SHARE")
	for _, k := range keys {
		fmt.Printf("%-*s %8d %5.0f%%\n", width, k, answers[k], 100*float64(answers[k])/float64(total))
	}
	fmt.Printf("%-*s %8d %5.0f%%\n", width, "(failed)", failed, 100*float64(failed)/float64(max(total, 1)))
}
