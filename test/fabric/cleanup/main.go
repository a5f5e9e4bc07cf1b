// Command cleanup removes what crashed fabric tests left behind: network
// namespaces (and their processes) and root-namespace links whose names
// start with a prefix.
//
//	sudo go run ./test/fabric/cleanup -prefix bgpt
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

func main() {
	prefix := flag.String("prefix", "", "name prefix of the namespaces and links to remove (required)")
	flag.Parse()
	if *prefix == "" {
		fmt.Fprintln(os.Stderr, "cleanup: -prefix is required")
		os.Exit(2)
	}
	if err := fabric.Cleanup(*prefix); err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
		os.Exit(1)
	}
}
