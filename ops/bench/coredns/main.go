// Command coredns is CoreDNS, pinned by this directory's go.mod, with only the plugins the DNS
// benchmark's Corefile uses (bind, errors, cache, kubernetes, forward, autopath, loadbalance). It is
// its own module so that CoreDNS's dependencies never enter logplane's go.mod; the benchmark in
// dataplane/clusterdns builds it with `go build` in this directory.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/autopath"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
)

func main() { coremain.Run() }
