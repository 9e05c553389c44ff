// Package portforward forwards a port on 127.0.0.1 to a pod's port through
// the API server, as kubectl port-forward does: the only way the suite
// reaches pods from outside the cluster besides the ingress.
package portforward

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
)

// ReadyTimeout bounds the wait for a forward to listen.
const ReadyTimeout = 30 * time.Second

// Forward is a running port-forward.
type Forward struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	Pod  string
	stop chan struct{}
}

// Close ends the forward.
func (f *Forward) Close() { close(f.stop) }

// ToPod forwards a free local port to port of pod namespace/name.
func ToPod(ctx context.Context, cfg *rest.Config, namespace, pod string, port int) (*Forward, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		return nil, err
	}
	errs := make(chan error, 1)
	go func() { errs <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-errs:
		return nil, fmt.Errorf("port-forward to %s/%s:%d: %w", namespace, pod, port, err)
	case <-time.After(ReadyTimeout):
		close(stop)
		return nil, fmt.Errorf("port-forward to %s/%s:%d not ready within %s", namespace, pod, port, ReadyTimeout)
	case <-ctx.Done():
		close(stop)
		return nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil {
		close(stop)
		return nil, err
	}
	return &Forward{Addr: fmt.Sprintf("127.0.0.1:%d", ports[0].Local), Pod: pod, stop: stop}, nil
}

// ToService forwards to the target port of the service's first port on one
// of its ready pods, as kubectl port-forward svc/NAME does.
func ToService(ctx context.Context, cfg *rest.Config, namespace, name string) (*Forward, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	svc, err := cs.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if len(svc.Spec.Ports) == 0 || len(svc.Spec.Selector) == 0 {
		return nil, fmt.Errorf("service %s/%s has no port or no selector to forward to", namespace, name)
	}
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector})})
	if err != nil {
		return nil, err
	}
	var pod *corev1.Pod
	for i := range pods.Items {
		if ok, _ := kube.PodReady(&pods.Items[i]); ok && pods.Items[i].DeletionTimestamp == nil {
			pod = &pods.Items[i]
			break
		}
	}
	if pod == nil {
		return nil, fmt.Errorf("service %s/%s has no ready pod to forward to", namespace, name)
	}
	target := svc.Spec.Ports[0].TargetPort
	port := target.IntValue()
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name != "" && p.Name == target.String() {
				port = int(p.ContainerPort)
			}
		}
	}
	if port == 0 {
		port = int(svc.Spec.Ports[0].Port)
	}
	return ToPod(ctx, cfg, namespace, pod.Name, port)
}
