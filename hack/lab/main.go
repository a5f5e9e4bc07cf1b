// Command lab builds, shows and removes the baremetal-ccm lab (see
// docs/lab.md); the lab itself is test/lab:
//
//	go run ./hack/lab up       # as root
//	go run ./hack/lab status
//	go run ./hack/lab down
//
// up starts a detached server process (lab serve) that builds the lab and
// holds its processes; down stops it and removes whatever is left. The
// lab's directory (--dir, $BMCCM_LAB_DIR) must be missing, empty or an
// earlier lab's: the lab removes only a directory holding its marker file.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/baremetal-ccm/baremetal-ccm/test/lab"
)

func main() {
	fs := flag.NewFlagSet("lab", flag.ExitOnError)
	dir := fs.String("dir", envOr("BMCCM_LAB_DIR", "/run/bmccm-lab"), "the lab's directory (state, logs, data); missing, empty or an earlier lab's")
	prefix := fs.String("prefix", "bmlab-", "prefix of the lab's namespaces and links (at most 9 bytes)")
	slot := fs.Int("slot", 0, "core subnet 198.51.100.(128+16*slot)/28 (0..5)")
	binDir := fs.String("k8s-bin", os.Getenv("BMCCM_K8S_BIN"), "directory with kube-apiserver (default: hack/build-k8s.sh's cache)")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: lab up|down|status [flags]")
		fs.PrintDefaults()
	}
	if len(os.Args) < 2 {
		fs.Usage()
		os.Exit(2)
	}
	cmd := os.Args[1]
	_ = fs.Parse(os.Args[2:])
	o := lab.Options{Prefix: *prefix, Dir: *dir, Slot: *slot, BinDir: *binDir,
		Logf: func(f string, a ...any) { fmt.Printf("lab: "+f+"\n", a...) }}
	var err error
	switch cmd {
	case "up":
		err = up(o)
	case "serve":
		err = lab.Serve(o)
	case "down":
		err = lab.Stop(o)
	case "status":
		err = lab.PrintStatus(os.Stdout, o)
	default:
		fs.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// up runs this program's serve detached with the same flags.
func up(o lab.Options) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	serve := []string{self, "serve", "--dir=" + o.Dir, "--prefix=" + o.Prefix, fmt.Sprintf("--slot=%d", o.Slot), "--k8s-bin=" + o.BinDir}
	return lab.Launch(o, serve, os.Stdout)
}
