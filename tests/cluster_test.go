package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/stateful-conformance/stateful-conformance/pkg/cluster"
	"github.com/stateful-conformance/stateful-conformance/pkg/clustercheck"
	"github.com/stateful-conformance/stateful-conformance/pkg/docker"
	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
)

// The smoke test: the cluster can run a workload of locally built images,
// with working DNS (service and headless per-pod names), pod-to-pod traffic,
// and no traffic leaving the machine.
func TestCluster(t *testing.T) {
	var ns string
	f := features.New("air-gapped kind cluster").WithLabel("area", "cluster").
		Setup(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			ns = envconf.RandomName("smoke", 12)
			cs := clientset(t, cfg)
			if err := createSmokeWorkload(ctx, cs, ns); err != nil {
				t.Fatal(err)
			}
			wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			for _, pod := range []string{"web-0", "web-1", "client"} {
				if err := kube.WaitForPodReady(wait, cs, ns, pod); err != nil {
					t.Fatalf("smoke workload in %s: %v", ns, err)
				}
			}
			return ctx
		}).
		Assess("the node is Ready", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			check(t, clustercheck.NodesReady(ctx, clientset(t, cfg)))
			return ctx
		}).
		Assess("CoreDNS is Ready", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			check(t, clustercheck.CoreDNSReady(ctx, clientset(t, cfg)))
			return ctx
		}).
		Assess("a pod of a locally built image runs", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			pod, err := clientset(t, cfg).CoreV1().Pods(ns).Get(ctx, "client", metav1.GetOptions{})
			check(t, err)
			st := pod.Status.ContainerStatuses
			if pod.Status.Phase != corev1.PodRunning || len(st) != 1 || st[0].State.Running == nil {
				t.Fatalf("pod client is %s, container state %+v", pod.Status.Phase, st)
			}
			if st[0].Image != suite.probe && st[0].Image != "docker.io/"+suite.probe {
				t.Fatalf("pod client runs image %s, want the locally built %s", st[0].Image, suite.probe)
			}
			return ctx
		}).
		Assess("kubernetes.default resolves from inside a pod", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			svc, err := clientset(t, cfg).CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
			check(t, err)
			check(t, clustercheck.Resolves(ctx, podExec(cfg), ns, "client", "kubernetes.default", svc.Spec.ClusterIP))
			return ctx
		}).
		Assess("a headless-service pod name resolves from inside a pod", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			for _, pod := range []string{"web-0", "web-1"} {
				name := fmt.Sprintf("%s.web.%s.svc", pod, ns)
				check(t, clustercheck.Resolves(ctx, podExec(cfg), ns, "client", name, podIP(ctx, t, cfg, ns, pod)))
			}
			return ctx
		}).
		Assess("pods reach each other by IP and by per-pod DNS name", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			ex := podExec(cfg)
			check(t, clustercheck.Serves(ctx, ex, ns, "client", fmt.Sprintf("http://%s/", net.JoinHostPort(podIP(ctx, t, cfg, ns, "web-1"), "8080")), "web-1"))
			check(t, clustercheck.Serves(ctx, ex, ns, "client", fmt.Sprintf("http://web-0.web.%s.svc:8080/", ns), "web-0"))
			return ctx
		}).
		Assess("traffic to the service CIDR that kube-proxy did not translate is rejected on the node", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			node := kindNode(t)
			// Read the rules first: if the guard were missing, the probe below
			// would send a packet off the machine.
			rules, err := docker.Run(ctx, "exec", node, "iptables-save", "-t", "filter")
			check(t, err)
			check(t, clustercheck.EgressGuarded(rules, "10.96.0.0/12"))
			addr := net.JoinHostPort(unallocatedServiceIP(ctx, t, cfg), "443")
			check(t, clustercheck.ConnectRefused(ctx, podExec(cfg), ns, "client", addr))
			return ctx
		}).
		Assess("no image was pulled", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if !suite.source {
				t.Skip("images came from upstream registries: pulls are expected there")
			}
			log, err := docker.Run(ctx, "exec", kindNode(t), "journalctl", "-u", "containerd", "--no-pager", "-o", "cat")
			check(t, err)
			check(t, clustercheck.NoPulls(log))
			return ctx
		}).
		Assess("the checks above fail on this cluster's wrong answers", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			// Each check, pointed at something wrong on the live cluster, must
			// report it: none of them passes whatever it is given.
			ex := podExec(cfg)
			web0, web1 := podIP(ctx, t, cfg, ns, "web-0"), podIP(ctx, t, cfg, ns, "web-1")
			mustFail := map[string]error{
				"a pod name that does not exist resolves":     clustercheck.Resolves(ctx, ex, ns, "client", fmt.Sprintf("web-9.web.%s.svc", ns), web0),
				"web-0's name resolves to web-1's address":    clustercheck.Resolves(ctx, ex, ns, "client", fmt.Sprintf("web-0.web.%s.svc", ns), web1),
				"web-0 answers as web-1":                      clustercheck.Serves(ctx, ex, ns, "client", fmt.Sprintf("http://%s/", net.JoinHostPort(web0, "8080")), "web-1"),
				"a served port counts as rejected":            clustercheck.ConnectRefused(ctx, ex, ns, "client", net.JoinHostPort(web0, "8080")),
				"the node's rules without their final REJECT": egressWithoutReject(ctx, t),
			}
			for what, err := range mustFail {
				if err == nil {
					t.Errorf("check passed although %s", what)
				}
			}
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if ns != "" {
				_ = clientset(t, cfg).CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
			}
			return ctx
		}).Feature()
	testenv.Test(t, f)
}

// createSmokeWorkload makes, in a new namespace ns: a headless service and a
// 2-replica StatefulSet "web" of probe HTTP servers, and a probe pod "client"
// to run checks from. Images are never pulled (they were loaded).
func createSmokeWorkload(ctx context.Context, cs kubernetes.Interface, ns string) error {
	labels := map[string]string{"app": "web"}
	probe := func(args ...string) corev1.Container {
		return corev1.Container{
			Name: "probe", Image: suite.probe, Args: args, ImagePullPolicy: corev1.PullIfNotPresent,
			SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), RunAsNonRoot: ptr.To(true)},
		}
	}
	web := probe("serve", ":8080")
	web.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	web.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}
	objs := []func() error{
		func() error {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "web"},
				Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels,
					Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
				ObjectMeta: metav1.ObjectMeta{Name: "web"},
				Spec: appsv1.StatefulSetSpec{
					Replicas: ptr.To[int32](2), ServiceName: "web",
					// Parallel: the smoke test is about the cluster, not ordering.
					PodManagementPolicy: appsv1.ParallelPodManagement,
					Selector:            &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{web}, TerminationGracePeriodSeconds: ptr.To[int64](1)},
					},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "client"},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{probe("sleep")}, TerminationGracePeriodSeconds: ptr.To[int64](1)},
			}, metav1.CreateOptions{})
			return err
		},
	}
	for _, create := range objs {
		if err := create(); err != nil {
			return fmt.Errorf("smoke workload in %s: %w", ns, err)
		}
	}
	return nil
}

// check fails the test with err, which is also its verdict.
func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		fatalf(t, "%v", err)
	}
}

func clientset(t *testing.T, cfg *envconf.Config) kubernetes.Interface {
	t.Helper()
	cs, err := cluster.Clientset(cfg.KubeconfigFile())
	check(t, err)
	return cs
}

// podExec runs commands in a pod's "probe" container.
func podExec(cfg *envconf.Config) clustercheck.Exec {
	return func(ctx context.Context, namespace, pod string, cmd ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		if err := cfg.Client().Resources().ExecInPod(ctx, namespace, pod, "probe", cmd, &stdout, &stderr); err != nil {
			return stdout.String(), fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		return stdout.String(), nil
	}
}

func podIP(ctx context.Context, t *testing.T, cfg *envconf.Config, ns, name string) string {
	t.Helper()
	pod, err := clientset(t, cfg).CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	check(t, err)
	if pod.Status.PodIP == "" {
		t.Fatalf("pod %s/%s has no IP", ns, name)
	}
	return pod.Status.PodIP
}

// unallocatedServiceIP is an address of the service CIDR no Service has, so
// kube-proxy has no rule for it.
func unallocatedServiceIP(ctx context.Context, t *testing.T, cfg *envconf.Config) string {
	t.Helper()
	svcs, err := clientset(t, cfg).CoreV1().Services("").List(ctx, metav1.ListOptions{})
	check(t, err)
	used := map[string]bool{}
	for _, s := range svcs.Items {
		for _, ip := range s.Spec.ClusterIPs {
			used[ip] = true
		}
	}
	for _, ip := range []string{"10.111.222.233", "10.111.222.234", "10.111.222.235"} {
		if !used[ip] {
			return ip
		}
	}
	t.Fatal("no unallocated service IP among the candidates")
	return ""
}

// kindNode is the node container of the kind cluster under test; a check
// that needs it is skipped, saying why, on a cluster that is not kind.
func kindNode(t *testing.T) string {
	t.Helper()
	if suite.kindCluster == "" {
		t.Skip("node-level check: the cluster under test is not a kind cluster this suite can docker exec into")
	}
	nodes, err := cluster.Nodes(suite.kindCluster)
	check(t, err)
	if len(nodes) == 0 {
		t.Fatalf("kind cluster %q has no node containers", suite.kindCluster)
	}
	return nodes[0]
}

// egressWithoutReject checks the node's live rules with the egress chain's
// final REJECT taken out (in the copy, not on the node).
func egressWithoutReject(ctx context.Context, t *testing.T) error {
	t.Helper()
	if suite.kindCluster == "" {
		return errors.New("not a kind cluster: nothing to read")
	}
	rules, err := docker.Run(ctx, "exec", kindNode(t), "iptables-save", "-t", "filter")
	check(t, err)
	var kept []string
	for _, line := range strings.Split(rules, "\n") {
		if !strings.HasPrefix(line, "-A "+clustercheck.EgressChain+" -j REJECT") {
			kept = append(kept, line)
		}
	}
	return clustercheck.EgressGuarded(strings.Join(kept, "\n"), "10.96.0.0/12")
}
