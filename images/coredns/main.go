// Command coredns is CoreDNS with only the plugins a kind cluster's DNS uses
// (kubeadm's Corefile, plus a few common ones), so the build skips the
// cloud-provider SDKs of the full plugin set and takes a fraction of the time.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/whoami"
)

// directives is the plugins' execution order: the order of CoreDNS's own
// plugin.cfg (core/dnsserver/zdirectives.go), restricted to those above.
var directives = []string{
	"reload", "ready", "health", "prometheus", "errors", "log", "loadbalance",
	"cache", "rewrite", "template", "hosts", "kubernetes", "loop", "forward", "whoami",
}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
