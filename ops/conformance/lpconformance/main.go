// Command lpconformance is the Go side of ops/conformance/run.sh, which runs Kubernetes'
// conformance suite against a logplane cluster: it builds the suite's images as OCI archives
// (images), summarizes the suite's JUnit reports by SIG (summary), and removes the pods the
// cluster leaves running (teardown). It is a tool for operators, not a library.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: lpconformance COMMAND [flags] [args]
  images -agnhost BIN [-agnhost-src DIR] [-busybox BIN] -o DIR REF...   build stand-ins of the suite's images
  summary [-match RE] [-o FILE] JUNIT.xml...                           passed/failed/skipped by SIG
  teardown -data-dir DIR -bridge NAME -pod-cidr CIDR                   remove the pods logplane up left running`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "images":
		err = imagesCommand(os.Args[2:])
	case "summary":
		err = summaryCommand(os.Args[2:])
	case "teardown":
		err = teardownCommand(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lpconformance:", err)
		os.Exit(1)
	}
}
