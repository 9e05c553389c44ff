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

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

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
}

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
	fmt.Fprintf(o.Log, "• deploying the lab from %s\n", o.Dir)
	images, err := buildImages(ctx, o, objs)
	if err != nil {
		return err
	}
	if err := manifest.ApplyTo(ctx, o.Config, objs, images); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
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
