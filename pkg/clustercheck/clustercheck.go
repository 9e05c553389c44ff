// Package clustercheck holds the smoke checks that prove a cluster can run the
// lab: each returns nil when the behaviour holds and an error saying what is
// wrong when it does not. The e2e suite runs them against the real cluster;
// their unit tests feed them broken clusters.
package clustercheck

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
)

// Exec runs cmd in a pod's container and returns its standard output; the
// error carries standard error.
type Exec func(ctx context.Context, namespace, pod string, cmd ...string) (string, error)

// NodesReady fails unless the cluster has nodes and every one is Ready.
func NodesReady(ctx context.Context, cs kubernetes.Interface) error {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(nodes.Items) == 0 {
		return errors.New("the cluster has no nodes")
	}
	var bad []string
	for i := range nodes.Items {
		if ok, why := kube.NodeReady(&nodes.Items[i]); !ok {
			bad = append(bad, why)
		}
	}
	return joined(bad)
}

// CoreDNSReady fails unless the coredns deployment is available and each of
// its pods is Ready.
func CoreDNSReady(ctx context.Context, cs kubernetes.Interface) error {
	d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("CoreDNS: %w", err)
	}
	if ok, why := kube.DeploymentAvailable(d); !ok {
		return errors.New(why)
	}
	pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err != nil {
		return err
	}
	if len(pods.Items) == 0 {
		return errors.New("CoreDNS has no pods")
	}
	var bad []string
	for i := range pods.Items {
		if ok, why := kube.PodReady(&pods.Items[i]); !ok {
			bad = append(bad, why)
		}
	}
	return joined(bad)
}

// Resolves fails unless name, looked up from inside pod with the pod's own
// resolver (search list included), resolves to exactly want.
func Resolves(ctx context.Context, exec Exec, namespace, pod, name string, want ...string) error {
	out, err := exec(ctx, namespace, pod, "/probe", "lookup", name)
	if err != nil {
		return fmt.Errorf("%s does not resolve from pod %s: %w", name, pod, err)
	}
	got := strings.Fields(out)
	sort.Strings(got)
	w := append([]string(nil), want...)
	sort.Strings(w)
	if strings.Join(got, " ") != strings.Join(w, " ") {
		return fmt.Errorf("%s resolves to %v from pod %s, want %v", name, got, pod, w)
	}
	return nil
}

// Serves fails unless an HTTP GET of url from inside pod answers 200 with
// body want.
func Serves(ctx context.Context, exec Exec, namespace, pod, url, want string) error {
	out, err := exec(ctx, namespace, pod, "/probe", "get", url)
	if err != nil {
		return fmt.Errorf("GET %s from pod %s: %w", url, pod, err)
	}
	if strings.TrimSpace(out) != want {
		return fmt.Errorf("GET %s from pod %s answered %q, want %q", url, pod, strings.TrimSpace(out), want)
	}
	return nil
}

// ConnectRefused fails unless a TCP connection from pod to addr is refused
// at once (rejected), rather than connected, timed out or unreachable.
func ConnectRefused(ctx context.Context, exec Exec, namespace, pod, addr string) error {
	out, err := exec(ctx, namespace, pod, "/probe", "-timeout", "3s", "connect", addr)
	if err != nil {
		return fmt.Errorf("connect %s from pod %s: %w", addr, pod, err)
	}
	if got := strings.TrimSpace(out); got != "refused" {
		return fmt.Errorf("a connection from pod %s to %s ended %q, want refused (rejected on the node)", pod, addr, got)
	}
	return nil
}

// EgressChain is the node's chain that rejects traffic bound off the machine.
const EgressChain = "SC-EGRESS"

// EgressGuarded checks iptables-save output of a node: the egress chain is
// hooked into OUTPUT and FORWARD, returns only for allowed destinations
// (never for the service CIDR or everything) and ends in REJECT; and pods may
// not reach the node's loopback, where Docker's DNS would forward their
// lookups of outside names off the machine.
func EgressGuarded(iptablesSave, serviceSubnet string) error {
	var chain []string
	hooked := map[string]bool{}
	loopbackGuarded := false
	for _, line := range strings.Split(iptablesSave, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" {
			continue
		}
		if (f[1] == "OUTPUT" || f[1] == "FORWARD") && strings.Join(f[2:], " ") == "-j "+EgressChain {
			hooked[f[1]] = true
		}
		if f[1] == EgressChain {
			chain = append(chain, strings.Join(f[2:], " "))
		}
		if f[1] == "INPUT" && strings.Contains(line, " -d 127.0.0.0/8 -j REJECT") && strings.Contains(line, " -s ") {
			loopbackGuarded = true
		}
	}
	var problems []string
	if !loopbackGuarded {
		problems = append(problems, "INPUT does not reject pods' traffic to the node's loopback (Docker's DNS)")
	}
	for _, hook := range []string{"OUTPUT", "FORWARD"} {
		if !hooked[hook] {
			problems = append(problems, fmt.Sprintf("%s does not jump to %s", hook, EgressChain))
		}
	}
	if len(chain) == 0 {
		problems = append(problems, "chain "+EgressChain+" is missing or empty")
	} else {
		if last := chain[len(chain)-1]; !strings.HasPrefix(last, "-j REJECT") {
			problems = append(problems, fmt.Sprintf("%s ends with %q, not REJECT", EgressChain, last))
		}
		for _, rule := range chain[:len(chain)-1] {
			if !strings.HasSuffix(rule, "-j RETURN") || !(strings.HasPrefix(rule, "-d ") || strings.HasPrefix(rule, "-o lo ")) {
				problems = append(problems, fmt.Sprintf("%s lets through more than a destination: %q", EgressChain, rule))
			}
			if strings.HasPrefix(rule, "-d "+serviceSubnet+" ") || strings.HasPrefix(rule, "-d 0.0.0.0/0 ") {
				problems = append(problems, fmt.Sprintf("%s lets through %q", EgressChain, rule))
			}
		}
	}
	return joined(problems)
}

var pullLine = regexp.MustCompile(`PullImage \\?"([^"\\]+)`)

// NoPulls checks a containerd log: it fails, naming the images, when any
// image pull was attempted.
func NoPulls(containerdLog string) error {
	seen := map[string]bool{}
	var pulled []string
	for _, m := range pullLine.FindAllStringSubmatch(containerdLog, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			pulled = append(pulled, m[1])
		}
	}
	if len(pulled) > 0 {
		return fmt.Errorf("containerd attempted to pull %s", strings.Join(pulled, ", "))
	}
	return nil
}

func joined(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "; "))
}
