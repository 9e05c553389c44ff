// Package labcheck finds, in a deployed lab's own objects, why a behaviour
// the lesson teaches is missing, and says it in the lab's terms ("Service
// mongo has a cluster IP, so its name gives that one virtual address ...").
//
// The suite's features judge behaviour on the live cluster; when one fails,
// they ask this package for the cause. An empty cause means the lab's
// objects are as the lesson wants them, so the cluster is at fault.
package labcheck

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// Names are the lesson's names for the lab's parts.
type Names struct {
	Namespace string
	// Database is the StatefulSet ("mongo").
	Database string
	// Frontend is the game's Deployment and Service ("pacman").
	Frontend string
	// Ingress routes Host to the front end ("pacman-ingress", "pacman.com").
	Ingress string
	Host    string
}

// Lesson are the names the lesson uses, in namespace ns.
func Lesson(ns string) Names {
	return Names{Namespace: ns, Database: "mongo", Frontend: "pacman", Ingress: "pacman-ingress", Host: "pacman.com"}
}

// Lab is what the cluster holds of a deployed lab; absent parts are nil.
type Lab struct {
	Names
	StatefulSet *appsv1.StatefulSet
	// Services are every Service of the lab's namespace.
	Services []corev1.Service
	Frontend *appsv1.Deployment
	Ingress  *networkingv1.Ingress
	HPAs     []autoscalingv2.HorizontalPodAutoscaler
}

// Load reads the lab's objects from the cluster.
func Load(ctx context.Context, cs kubernetes.Interface, n Names) (*Lab, error) {
	l := &Lab{Names: n}
	sts, err := cs.AppsV1().StatefulSets(n.Namespace).Get(ctx, n.Database, metav1.GetOptions{})
	if err := keep(err, func() { l.StatefulSet = sts }); err != nil {
		return nil, err
	}
	d, err := cs.AppsV1().Deployments(n.Namespace).Get(ctx, n.Frontend, metav1.GetOptions{})
	if err := keep(err, func() { l.Frontend = d }); err != nil {
		return nil, err
	}
	ing, err := cs.NetworkingV1().Ingresses(n.Namespace).Get(ctx, n.Ingress, metav1.GetOptions{})
	if err := keep(err, func() { l.Ingress = ing }); err != nil {
		return nil, err
	}
	svcs, err := cs.CoreV1().Services(n.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	l.Services = svcs.Items
	hpas, err := cs.AutoscalingV2().HorizontalPodAutoscalers(n.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	l.HPAs = hpas.Items
	return l, nil
}

func keep(err error, set func()) error {
	if err == nil {
		set()
		return nil
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (l *Lab) service(name string) *corev1.Service {
	for i := range l.Services {
		if l.Services[i].Name == name {
			return &l.Services[i]
		}
	}
	return nil
}

func (l *Lab) noDatabase() string {
	if l.StatefulSet == nil {
		return fmt.Sprintf("the lab has no StatefulSet %s in namespace %s", l.Database, l.Namespace)
	}
	return ""
}

// DNSCause says why the database's pods get no DNS names of their own
// (mongo-0.mongo), or "".
func (l *Lab) DNSCause() string {
	if c := l.noDatabase(); c != "" {
		return c
	}
	s := l.StatefulSet
	name := s.Spec.ServiceName
	if name == "" {
		return fmt.Sprintf("StatefulSet %s has no serviceName, so its pods get no DNS names of their own", s.Name)
	}
	svc := l.service(name)
	if svc == nil {
		return fmt.Sprintf("StatefulSet %s's serviceName %q names no Service in namespace %s, so its pods get no DNS records of their own", s.Name, name, l.Namespace)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		return fmt.Sprintf("Service %s has a cluster IP (%s), so its name gives that one virtual address instead of each pod's, and the DNS specification promises per-pod records only under a headless Service (it must be headless: clusterIP: None)", name, svc.Spec.ClusterIP)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(s.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
		return fmt.Sprintf("Service %s selects %v, which the pods of StatefulSet %s (labels %v) do not carry, so they get no DNS records", name, svc.Spec.Selector, s.Name, s.Spec.Template.Labels)
	}
	return ""
}

// OrderCause says why the database's pods are not created and removed one
// at a time in order, or "".
func (l *Lab) OrderCause() string {
	if c := l.noDatabase(); c != "" {
		return c
	}
	if p := l.StatefulSet.Spec.PodManagementPolicy; p == appsv1.ParallelPodManagement {
		return fmt.Sprintf("StatefulSet %s has podManagementPolicy Parallel, so its pods are created and removed all at once, not one at a time in order (use OrderedReady, the default)", l.StatefulSet.Name)
	}
	return ""
}

// ClaimCause says why the database's pods have no claim of their own that
// outlives them, or "".
func (l *Lab) ClaimCause() string {
	if c := l.noDatabase(); c != "" {
		return c
	}
	s := l.StatefulSet
	if len(s.Spec.VolumeClaimTemplates) > 0 {
		return ""
	}
	mounted := map[string]string{}
	for _, c := range s.Spec.Template.Spec.Containers {
		for _, m := range c.VolumeMounts {
			mounted[m.Name] = m.MountPath
		}
	}
	for _, v := range s.Spec.Template.Spec.Volumes {
		path, ok := mounted[v.Name]
		if !ok {
			continue
		}
		switch {
		case v.EmptyDir != nil:
			return fmt.Sprintf("StatefulSet %s has no volumeClaimTemplates: its data at %s is on emptyDir volume %q, which dies with each pod", s.Name, path, v.Name)
		case v.PersistentVolumeClaim != nil:
			return fmt.Sprintf("StatefulSet %s has no volumeClaimTemplates: its pods share claim %s", s.Name, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return fmt.Sprintf("StatefulSet %s has no volumeClaimTemplates and no volume: its data lives in the container and dies with it", s.Name)
}

// RetentionCause says why claims do not outlive a scale-down, or "".
func (l *Lab) RetentionCause() string {
	if c := l.noDatabase(); c != "" {
		return c
	}
	if p := l.StatefulSet.Spec.PersistentVolumeClaimRetentionPolicy; p != nil && p.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		return fmt.Sprintf("StatefulSet %s's persistentVolumeClaimRetentionPolicy has whenScaled: Delete, so scaling down deletes the removed pods' claims and their data", l.StatefulSet.Name)
	}
	return ""
}

// IngressCause says why Host is not routed to the front end, or "".
func (l *Lab) IngressCause() string {
	if l.Ingress == nil {
		return fmt.Sprintf("the lab has no Ingress %s in namespace %s", l.Names.Ingress, l.Namespace)
	}
	var hosts []string
	for _, r := range l.Ingress.Spec.Rules {
		if r.Host != l.Host {
			hosts = append(hosts, fmt.Sprintf("%q", r.Host))
			continue
		}
		if r.HTTP == nil {
			return fmt.Sprintf("Ingress %s has a rule for host %s with no paths", l.Ingress.Name, l.Host)
		}
		for _, p := range r.HTTP.Paths {
			if p.Path == "/" || p.Path == "" {
				if b := p.Backend.Service; b == nil || b.Name != l.Names.Frontend {
					return fmt.Sprintf("Ingress %s sends %s/ to %s, not to Service %s", l.Ingress.Name, l.Host, backendName(p.Backend), l.Names.Frontend)
				}
				return ""
			}
		}
		return fmt.Sprintf("Ingress %s has no path / for host %s", l.Ingress.Name, l.Host)
	}
	return fmt.Sprintf("Ingress %s routes host %s, not %s", l.Ingress.Name, strings.Join(hosts, ", "), l.Host)
}

func backendName(b networkingv1.IngressBackend) string {
	if b.Service != nil {
		return "Service " + b.Service.Name
	}
	if b.Resource != nil {
		return b.Resource.Kind + " " + b.Resource.Name
	}
	return "nothing"
}

// ScaleCause says what keeps the front end from holding replicas, or "".
func (l *Lab) ScaleCause(replicas int32) string {
	for _, h := range l.HPAs {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != l.Names.Frontend {
			continue
		}
		if h.Spec.MaxReplicas < replicas {
			return fmt.Sprintf("HorizontalPodAutoscaler %s keeps Deployment %s at most %d replica(s), so it undoes a scale to %d", h.Name, l.Names.Frontend, h.Spec.MaxReplicas, replicas)
		}
	}
	return ""
}

// WriterCause says why the front end does not write to the one writer,
// mongo-0, through its fixed DNS name, or "".
func (l *Lab) WriterCause() string {
	if c := l.noDatabase(); c != "" {
		return c
	}
	if l.Frontend == nil {
		return fmt.Sprintf("the lab has no Deployment %s in namespace %s", l.Names.Frontend, l.Namespace)
	}
	hosts := envValue(l.Frontend, "MONGO_SERVICE_HOST")
	if hosts == "" {
		return fmt.Sprintf("Deployment %s sets no MONGO_SERVICE_HOST, so it does not know the writer %s", l.Names.Frontend, l.writer())
	}
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if host, _, found := strings.Cut(h, ":"); found {
			h = host
		}
		first, _, _ := strings.Cut(h, ".")
		if first == l.StatefulSet.Name+"-0" {
			continue
		}
		if svc := l.service(first); svc != nil {
			return fmt.Sprintf("Deployment %s writes through MONGO_SERVICE_HOST=%s: Service %s load-balances over every pod it selects (%s), so writes land on whichever answers, not on the one writer %s", l.Names.Frontend, hosts, svc.Name, l.podNames(), l.writer())
		}
		return fmt.Sprintf("Deployment %s writes to MONGO_SERVICE_HOST=%s, not to the one writer %s", l.Names.Frontend, hosts, l.writer())
	}
	return ""
}

func (l *Lab) writer() string {
	return fmt.Sprintf("%s-0.%s", l.StatefulSet.Name, l.StatefulSet.Spec.ServiceName)
}

func (l *Lab) podNames() string {
	n := int32(1)
	if l.StatefulSet.Spec.Replicas != nil {
		n = *l.StatefulSet.Spec.Replicas
	}
	var out []string
	for i := int32(0); i < n; i++ {
		out = append(out, fmt.Sprintf("%s-%d", l.StatefulSet.Name, i))
	}
	return strings.Join(out, ", ")
}

func envValue(d *appsv1.Deployment, name string) string {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
	}
	return ""
}

// Explain joins a behaviour's failure with its cause: the lab's, when one
// of causes is found, else the cluster's.
func Explain(failure string, causes ...string) string {
	var found []string
	for _, c := range causes {
		if c != "" {
			found = append(found, c)
		}
	}
	sort.Strings(found)
	if len(found) == 0 {
		return failure + " (the lab's objects are as the lesson wants them, so the cluster is at fault)"
	}
	return failure + ": " + strings.Join(found, "; ")
}
