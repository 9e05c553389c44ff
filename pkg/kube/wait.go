// Package kube holds small helpers over client-go that the suite and the
// tools share: waiting on watches and reading object state.
package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// Check tells whether obj is as wanted and, when not, why.
type Check[T runtime.Object] func(obj T) (ok bool, why string)

// WaitForAll watches what lw lists until at least one object exists and every
// one passes check, or ctx ends. The error then names each object still
// failing and why.
func WaitForAll[T runtime.Object](ctx context.Context, lw cache.ListerWatcher, example T, check Check[T]) error {
	var store cache.Store
	pending := func() []string {
		var out []string
		for _, item := range store.List() {
			if ok, why := check(item.(T)); !ok {
				out = append(out, why)
			}
		}
		sort.Strings(out)
		return out
	}
	done := func() bool { return len(store.List()) > 0 && len(pending()) == 0 }
	pre := func(s cache.Store) (bool, error) {
		store = s
		return done(), nil
	}
	_, err := watchtools.UntilWithSync(ctx, lw, example, pre, func(watch.Event) (bool, error) {
		return done(), nil
	})
	if err != nil {
		if store == nil {
			return fmt.Errorf("never listed: %w", err)
		}
		why := pending()
		if len(store.List()) == 0 {
			why = []string{"none exists yet"}
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, watchtools.ErrWatchClosed) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("%s", strings.Join(why, "; "))
		}
		return fmt.Errorf("%w (%s)", err, strings.Join(why, "; "))
	}
	return nil
}

// ListWatch lists and watches resource in namespace ("" for all or for
// cluster-scoped), optionally one object by name.
func ListWatch(getter cache.Getter, resource, namespace, name string) *cache.ListWatch {
	selector := fields.Everything()
	if name != "" {
		selector = fields.OneTermEqualSelector("metadata.name", name)
	}
	return cache.NewListWatchFromClient(getter, resource, namespace, selector)
}

// NodeReady passes a node whose Ready condition is True.
func NodeReady(n *corev1.Node) (bool, string) {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return true, ""
			}
			return false, fmt.Sprintf("node %s not Ready: %s %s", n.Name, c.Reason, c.Message)
		}
	}
	return false, fmt.Sprintf("node %s has no Ready condition yet", n.Name)
}

// PodReady passes a pod whose Ready condition is True.
func PodReady(p *corev1.Pod) (bool, string) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true, ""
		}
	}
	return false, fmt.Sprintf("pod %s/%s not Ready (phase %s%s)", p.Namespace, p.Name, p.Status.Phase, containerWaits(p))
}

// DeploymentAvailable passes a deployment whose replicas are all updated,
// ready and available.
func DeploymentAvailable(d *appsv1.Deployment) (bool, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	if s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.ReadyReplicas == want && s.AvailableReplicas == want {
		return true, ""
	}
	return false, fmt.Sprintf("deployment %s/%s: %d/%d ready", d.Namespace, d.Name, s.ReadyReplicas, want)
}

// containerWaits describes why a pod's containers are not running.
func containerWaits(p *corev1.Pod) string {
	var out []string
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			out = append(out, cs.Name+": "+w.Reason+" "+w.Message)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; " + strings.Join(out, "; ")
}

// WaitForNodesReady waits until every node is Ready.
func WaitForNodesReady(ctx context.Context, cs kubernetes.Interface) error {
	return WaitForAll(ctx, ListWatch(cs.CoreV1().RESTClient(), "nodes", "", ""), &corev1.Node{}, NodeReady)
}

// WaitForDeployment waits until deployment namespace/name is available.
func WaitForDeployment(ctx context.Context, cs kubernetes.Interface, namespace, name string) error {
	return WaitForAll(ctx, ListWatch(cs.AppsV1().RESTClient(), "deployments", namespace, name), &appsv1.Deployment{}, DeploymentAvailable)
}

// WaitForPodReady waits until pod namespace/name is Ready.
func WaitForPodReady(ctx context.Context, cs kubernetes.Interface, namespace, name string) error {
	return WaitForAll(ctx, ListWatch(cs.CoreV1().RESTClient(), "pods", namespace, name), &corev1.Pod{}, PodReady)
}

// DaemonSetReady passes a daemon set whose pods are all updated and ready
// on every node it is scheduled to.
func DaemonSetReady(d *appsv1.DaemonSet) (bool, string) {
	s := d.Status
	if s.ObservedGeneration >= d.Generation && s.DesiredNumberScheduled > 0 &&
		s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberReady == s.DesiredNumberScheduled {
		return true, ""
	}
	return false, fmt.Sprintf("daemonset %s/%s: %d/%d ready", d.Namespace, d.Name, s.NumberReady, s.DesiredNumberScheduled)
}

// WaitForDaemonSet waits until daemon set namespace/name is ready.
func WaitForDaemonSet(ctx context.Context, cs kubernetes.Interface, namespace, name string) error {
	return WaitForAll(ctx, ListWatch(cs.AppsV1().RESTClient(), "daemonsets", namespace, name), &appsv1.DaemonSet{}, DaemonSetReady)
}

// WaitForCSIDriverOnNodes waits until every node's CSINode lists driver,
// which the kubelet writes once the plugin has registered.
func WaitForCSIDriverOnNodes(ctx context.Context, cs kubernetes.Interface, driver string) error {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range nodes.Items {
		err := WaitForAll(ctx, ListWatch(cs.StorageV1().RESTClient(), "csinodes", "", n.Name), &storagev1.CSINode{}, func(c *storagev1.CSINode) (bool, string) {
			for _, d := range c.Spec.Drivers {
				if d.Name == driver {
					return true, ""
				}
			}
			return false, fmt.Sprintf("node %s has not registered CSI driver %s", c.Name, driver)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// WaitGone watches what lw lists until nothing is left (the list is one
// object, by name, for a deletion).
func WaitGone(ctx context.Context, lw cache.ListerWatcher, example runtime.Object) error {
	var store cache.Store
	_, err := watchtools.UntilWithSync(ctx, lw, example, func(s cache.Store) (bool, error) {
		store = s
		return len(s.List()) == 0, nil
	}, func(watch.Event) (bool, error) {
		return len(store.List()) == 0, nil
	})
	if err != nil && store != nil {
		return fmt.Errorf("still there after %w", err)
	}
	return err
}

// PVCBound passes a bound claim.
func PVCBound(c *corev1.PersistentVolumeClaim) (bool, string) {
	if c.Status.Phase == corev1.ClaimBound {
		return true, ""
	}
	return false, fmt.Sprintf("claim %s/%s is %s", c.Namespace, c.Name, c.Status.Phase)
}

// WaitForPVC waits until claim namespace/name passes check.
func WaitForPVC(ctx context.Context, cs kubernetes.Interface, namespace, name string, check Check[*corev1.PersistentVolumeClaim]) error {
	return WaitForAll(ctx, ListWatch(cs.CoreV1().RESTClient(), "persistentvolumeclaims", namespace, name), &corev1.PersistentVolumeClaim{}, check)
}

// WaitForEvent waits for an event about object namespace/name with reason,
// and returns its message.
func WaitForEvent(ctx context.Context, cs kubernetes.Interface, namespace, name, reason string) (string, error) {
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "events", namespace,
		fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.name", name), fields.OneTermEqualSelector("reason", reason)))
	var message string
	err := WaitForAll(ctx, lw, &corev1.Event{}, func(e *corev1.Event) (bool, string) {
		message = e.Message
		return true, ""
	})
	if err != nil {
		return "", fmt.Errorf("no %s event for %s/%s: %w", reason, namespace, name, err)
	}
	return message, nil
}

// StatefulSetReady passes a StatefulSet whose replicas are all updated and
// ready.
func StatefulSetReady(s *appsv1.StatefulSet) (bool, string) {
	want := int32(1)
	if s.Spec.Replicas != nil {
		want = *s.Spec.Replicas
	}
	st := s.Status
	if st.ObservedGeneration >= s.Generation && st.ReadyReplicas == want && st.UpdatedReplicas == want && st.CurrentRevision == st.UpdateRevision {
		return true, ""
	}
	return false, fmt.Sprintf("statefulset %s/%s: %d/%d ready", s.Namespace, s.Name, st.ReadyReplicas, want)
}

// WaitForWorkloads waits until every Deployment, StatefulSet and DaemonSet
// among objs is ready, in order.
func WaitForWorkloads(ctx context.Context, cs kubernetes.Interface, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		var err error
		switch o.GetKind() {
		case "Deployment":
			err = WaitForDeployment(ctx, cs, o.GetNamespace(), o.GetName())
		case "StatefulSet":
			err = WaitForAll(ctx, ListWatch(cs.AppsV1().RESTClient(), "statefulsets", o.GetNamespace(), o.GetName()), &appsv1.StatefulSet{}, StatefulSetReady)
		case "DaemonSet":
			err = WaitForDaemonSet(ctx, cs, o.GetNamespace(), o.GetName())
		}
		if err != nil {
			return err
		}
	}
	return nil
}
