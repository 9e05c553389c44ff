package clustercheck

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func node(name string, ready corev1.ConditionStatus) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: ready, Reason: "KubeletNotReady", Message: "container runtime network not ready"},
		}},
	}
}

func TestNodesReady(t *testing.T) {
	ctx := context.Background()
	require.NoError(t, NodesReady(ctx, fake.NewClientset(node("a", corev1.ConditionTrue))))

	err := NodesReady(ctx, fake.NewClientset(node("a", corev1.ConditionTrue), node("b", corev1.ConditionFalse)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "node b not Ready: KubeletNotReady")

	assert.ErrorContains(t, NodesReady(ctx, fake.NewClientset()), "no nodes")
}

func coredns(want, ready int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: "kube-system"},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(want)},
		Status:     appsv1.DeploymentStatus{UpdatedReplicas: want, ReadyReplicas: ready, AvailableReplicas: ready},
	}
}

func dnsPod(name string, ready corev1.ConditionStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-dns"}},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}},
		},
	}
}

func TestCoreDNSReady(t *testing.T) {
	ctx := context.Background()
	require.NoError(t, CoreDNSReady(ctx, fake.NewClientset(coredns(2, 2), dnsPod("c1", corev1.ConditionTrue), dnsPod("c2", corev1.ConditionTrue))))
	assert.ErrorContains(t, CoreDNSReady(ctx, fake.NewClientset(coredns(2, 1), dnsPod("c1", corev1.ConditionTrue))), "1/2 ready")
	assert.ErrorContains(t, CoreDNSReady(ctx, fake.NewClientset(coredns(1, 1), dnsPod("c1", corev1.ConditionFalse))), "pod kube-system/c1 not Ready")
	assert.ErrorContains(t, CoreDNSReady(ctx, fake.NewClientset()), "CoreDNS")
}

// execer answers each command line with a canned output or error.
func execer(answers map[string]string) Exec {
	return func(_ context.Context, _, _ string, cmd ...string) (string, error) {
		out, ok := answers[strings.Join(cmd, " ")]
		if !ok {
			return "", errors.New("command terminated with exit code 1: lookup failed: no such host")
		}
		return out, nil
	}
}

func TestResolves(t *testing.T) {
	ctx := context.Background()
	ex := execer(map[string]string{
		"/probe lookup kubernetes.default":   "10.96.0.1\n",
		"/probe lookup web-0.web.ns.svc":     "10.244.0.7\n",
		"/probe lookup stale-0.stale.ns.svc": "10.244.0.99\n",
	})
	require.NoError(t, Resolves(ctx, ex, "ns", "client", "kubernetes.default", "10.96.0.1"))
	require.NoError(t, Resolves(ctx, ex, "ns", "client", "web-0.web.ns.svc", "10.244.0.7"))
	// A name that does not resolve, and one that resolves to the wrong pod.
	assert.ErrorContains(t, Resolves(ctx, ex, "ns", "client", "web-1.web.ns.svc", "10.244.0.8"), "does not resolve")
	assert.ErrorContains(t, Resolves(ctx, ex, "ns", "client", "stale-0.stale.ns.svc", "10.244.0.5"), "resolves to [10.244.0.99]")
}

func TestServes(t *testing.T) {
	ctx := context.Background()
	ex := execer(map[string]string{
		"/probe get http://10.244.0.7:8080/": "web-0\n",
		"/probe get http://10.244.0.8:8080/": "web-0\n",
	})
	require.NoError(t, Serves(ctx, ex, "ns", "client", "http://10.244.0.7:8080/", "web-0"))
	assert.ErrorContains(t, Serves(ctx, ex, "ns", "client", "http://10.244.0.8:8080/", "web-1"), `answered "web-0"`)
	assert.ErrorContains(t, Serves(ctx, ex, "ns", "client", "http://10.244.0.9:8080/", "web-1"), "GET")
}

func TestConnectRefused(t *testing.T) {
	ctx := context.Background()
	for out, ok := range map[string]bool{"refused\n": true, "timeout\n": false, "connected\n": false, "unreachable\n": false} {
		ex := execer(map[string]string{"/probe -timeout 3s connect 10.111.222.233:443": out})
		err := ConnectRefused(ctx, ex, "ns", "client", "10.111.222.233:443")
		if ok {
			assert.NoError(t, err, out)
		} else {
			assert.Error(t, err, out)
		}
	}
}

const guarded = `*filter
:SC-EGRESS - [0:0]
-A INPUT -s 10.244.0.0/16 -d 127.0.0.0/8 -j REJECT --reject-with icmp-port-unreachable
-A FORWARD -j SC-EGRESS
-A OUTPUT -j SC-EGRESS
-A SC-EGRESS -o lo -j RETURN
-A SC-EGRESS -d 127.0.0.0/8 -j RETURN
-A SC-EGRESS -d 10.244.0.0/16 -j RETURN
-A SC-EGRESS -d 172.18.0.0/16 -j RETURN
-A SC-EGRESS -j REJECT --reject-with icmp-port-unreachable
COMMIT
`

func TestEgressGuarded(t *testing.T) {
	require.NoError(t, EgressGuarded(guarded, "10.96.0.0/12"))
	broken := map[string]string{
		"no chain":                "*filter\n-A OUTPUT -j ACCEPT\nCOMMIT\n",
		"not hooked in OUTPUT":    strings.Replace(guarded, "-A OUTPUT -j SC-EGRESS\n", "", 1),
		"no final REJECT":         strings.Replace(guarded, "-A SC-EGRESS -j REJECT --reject-with icmp-port-unreachable\n", "", 1),
		"service CIDR allowed":    strings.Replace(guarded, "-A SC-EGRESS -d 10.244.0.0/16 -j RETURN\n", "-A SC-EGRESS -d 10.96.0.0/12 -j RETURN\n", 1),
		"everything allowed":      strings.Replace(guarded, "-A SC-EGRESS -d 127.0.0.0/8 -j RETURN\n", "-A SC-EGRESS -j RETURN\n", 1),
		"pods reach Docker's DNS": strings.Replace(guarded, "-A INPUT -s 10.244.0.0/16 -d 127.0.0.0/8 -j REJECT --reject-with icmp-port-unreachable\n", "", 1),
	}
	for name, rules := range broken {
		assert.Error(t, EgressGuarded(rules, "10.96.0.0/12"), name)
	}
}

func TestNoPulls(t *testing.T) {
	require.NoError(t, NoPulls(`time="2026-11-21T22:00:00Z" level=info msg="ImageCreate event name:\"registry.k8s.io/pause:3.10\""`))
	err := NoPulls(`time="2026-11-21T22:00:00Z" level=info msg="PullImage \"docker.io/library/busybox:latest\""` + "\n" +
		`time="2026-11-21T22:00:01Z" level=info msg="PullImage \"docker.io/library/busybox:latest\""`)
	require.Error(t, err)
	assert.Equal(t, "containerd attempted to pull docker.io/library/busybox:latest", err.Error())
}
