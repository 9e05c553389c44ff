// Package lab deploys and removes the pacman lab: the manifests of a lab
// directory (the project's own manifests/lab, or any variant of the lab the
// suite is asked to certify), with the project's images built and loaded
// where the manifests name them, waiting on watches until it runs.
package lab

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/stateful-conformance/stateful-conformance/pkg/buildcache"
	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
	"github.com/stateful-conformance/stateful-conformance/pkg/localimage"
	"github.com/stateful-conformance/stateful-conformance/pkg/manifest"
)

// Images are the names the project's manifests give the images it builds,
// with what each is built from.
var Images = map[string]localimage.Program{
	"stateful-conformance/mongo:latest":  {Name: "mongo", Module: "images/mongo", Package: "."},
	"stateful-conformance/pacman:latest": {Name: "pacman", Module: "images/pacman", Package: "."},
}

// Options say which lab to deploy where.
type Options struct {
	// Dir holds the lab's manifests (*.yaml).
	Dir string
	// RepoRoot is the project's checkout, for building images.
	RepoRoot string
	Cache    *buildcache.Cache
	Config   *rest.Config
	// KindCluster names the kind cluster to load built images into.
	KindCluster string
	Log         io.Writer
	// Timeout bounds the wait for the lab to run (default 5 minutes).
	Timeout time.Duration
	// Fresh deletes the lab's namespaces first, when this project made them,
	// so that nothing of an earlier run or of another lab is left.
	Fresh bool
}

// ResetTimeout bounds the wait for an earlier lab's namespace to go.
const ResetTimeout = 3 * time.Minute

// Deploy applies the lab and waits until every StatefulSet and Deployment
// it has is ready.
func Deploy(ctx context.Context, o Options) error {
	start := time.Now()
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	objs, err := manifest.ReadDir(o.Dir)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return err
	}
	if o.Fresh {
		if err := removeNamespaces(ctx, cs, objs, o.Log); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Log, "• deploying the lab from %s (waiting up to %s for it to run)\n", o.Dir, o.Timeout)
	images, err := buildImages(ctx, o, objs)
	if err != nil {
		return err
	}
	if err := manifest.ApplyTo(ctx, o.Config, objs, images); err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := kube.WaitForWorkloads(wait, cs, objs); err != nil {
		return fmt.Errorf("lab %s: %w", o.Dir, err)
	}
	fmt.Fprintf(o.Log, "• lab ready in %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// Remove deletes what the lab's manifests create.
func Remove(ctx context.Context, o Options) error {
	objs, err := manifest.ReadDir(o.Dir)
	if err != nil {
		return err
	}
	applier, err := manifest.NewApplier(o.Config)
	if err != nil {
		return err
	}
	return applier.Delete(ctx, objs)
}

// removeNamespaces deletes the namespaces objs create, when they exist and
// this project made them, and waits until they are gone (with their claims,
// so their volumes are released). A namespace someone else made is refused.
func removeNamespaces(ctx context.Context, cs kubernetes.Interface, objs []*unstructured.Unstructured, log io.Writer) error {
	for _, o := range objs {
		if o.GetKind() != "Namespace" {
			continue
		}
		ns, err := cs.CoreV1().Namespaces().Get(ctx, o.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if !madeHere(ns.ManagedFields) {
			return fmt.Errorf("namespace %s exists and was not made by %s: delete it, or deploy the lab into a cluster without it", ns.Name, manifest.FieldManager)
		}
		start := time.Now()
		fmt.Fprintf(log, "• removing the earlier lab's namespace %s (up to %s)\n", ns.Name, ResetTimeout)
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		// The namespace controller first looks 5 s after the deletion; what
		// it then finds still terminating (pods in their grace period,
		// claims held by their protection finalizer) makes it look again
		// only 8 s or more later. The earlier lab keeps nothing, so its pods
		// get a 1 s grace period and its claims are deleted now, and are
		// gone by that first look: 5.7 s instead of 16.6 s here. (A
		// terminating namespace takes no new pods, so no controller brings
		// them back.)
		if err := cs.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the pods of namespace %s: %w", ns.Name, err)
		}
		if err := cs.CoreV1().PersistentVolumeClaims(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the claims of namespace %s: %w", ns.Name, err)
		}
		wait, cancel := context.WithTimeout(ctx, ResetTimeout)
		err = kube.WaitGone(wait, kube.ListWatch(cs.CoreV1().RESTClient(), "namespaces", "", ns.Name), &corev1.Namespace{})
		cancel()
		if err != nil {
			return fmt.Errorf("namespace %s: %w", ns.Name, err)
		}
		fmt.Fprintf(log, "  namespace %s gone in %s\n", ns.Name, time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

func madeHere(fields []metav1.ManagedFieldsEntry) bool {
	for _, f := range fields {
		if f.Manager == manifest.FieldManager {
			return true
		}
	}
	return false
}

// buildImages builds the project's images the manifests name and loads them
// into the kind cluster; a lab that names none of them needs no build.
func buildImages(ctx context.Context, o Options, objs []*unstructured.Unstructured) (map[string]string, error) {
	named := map[string]bool{}
	for _, obj := range objs {
		for _, img := range manifest.Images(obj) {
			named[img] = true
		}
	}
	progs := map[string]localimage.Program{}
	for ref, prog := range Images {
		if !named[ref] {
			continue
		}
		if o.KindCluster == "" {
			return nil, fmt.Errorf("the lab names %s, built here, and only a kind cluster can have it loaded", ref)
		}
		progs[ref] = prog
	}
	return localimage.BuildAll(ctx, o.RepoRoot, o.Cache, o.KindCluster, progs, o.Log)
}
