// Package manifest reads Kubernetes manifests from YAML files and applies
// them with server-side apply, so applying twice changes nothing.
package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager owns the fields this project applies.
const FieldManager = "stateful-conformance"

// ReadFiles decodes every object of the given YAML files, in order.
func ReadFiles(files ...string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// BaseFile, in a manifest directory, makes it an overlay: it names (relative
// to the directory) a base directory whose objects are read first; each
// object of the overlay then replaces the base object of the same kind,
// namespace and name, or is added.
const BaseFile = "BASE"

// ReadDir decodes every *.yaml file of dir, files in name order, over its
// base when dir is an overlay.
func ReadDir(dir string) ([]*unstructured.Unstructured, error) {
	own, err := readYAMLDir(dir)
	if err != nil {
		return nil, err
	}
	base, err := os.ReadFile(filepath.Join(dir, BaseFile))
	if errors.Is(err, os.ErrNotExist) {
		return own, nil
	}
	if err != nil {
		return nil, err
	}
	objs, err := ReadDir(filepath.Join(dir, strings.TrimSpace(string(base))))
	if err != nil {
		return nil, fmt.Errorf("base of %s: %w", dir, err)
	}
	index := map[string]int{}
	for i, o := range objs {
		index[identity(o)] = i
	}
	for _, o := range own {
		if i, ok := index[identity(o)]; ok {
			objs[i] = o
		} else {
			objs = append(objs, o)
		}
	}
	return objs, nil
}

func identity(o *unstructured.Unstructured) string {
	return o.GroupVersionKind().GroupKind().String() + "/" + o.GetNamespace() + "/" + o.GetName()
}

func readYAMLDir(dir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml manifests in %s", dir)
	}
	sort.Strings(files)
	return ReadFiles(files...)
}

// Decode splits a multi-document YAML stream into objects, skipping empty
// documents.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		obj := map[string]any{}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
		if len(obj) == 0 {
			continue
		}
		if u := (&unstructured.Unstructured{Object: obj}); u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("object %q has no kind or apiVersion", u.GetName())
		}
		// Decoded again by the API machinery's own JSON scheme, so that
		// numbers are int64 (as NestedInt64 and the typed converters
		// expect), not encoding/json's float64.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
}

// eachContainer calls fn with every container and init container of obj's
// pod template (or of obj, a Pod); changes fn makes are kept.
func eachContainer(obj *unstructured.Unstructured, fn func(c map[string]any)) error {
	spec := []string{"spec", "template", "spec"}
	if obj.GetKind() == "Pod" {
		spec = []string{"spec"}
	}
	for _, field := range []string{"containers", "initContainers"} {
		path := append(append([]string{}, spec...), field)
		containers, found, err := unstructured.NestedSlice(obj.Object, path...)
		if err != nil || !found {
			continue
		}
		for _, c := range containers {
			if cm, ok := c.(map[string]any); ok {
				fn(cm)
			}
		}
		// NestedSlice returned a copy.
		if err := unstructured.SetNestedSlice(obj.Object, containers, path...); err != nil {
			return err
		}
	}
	return nil
}

// SetImages replaces container images in the pod templates (and pods) of
// objs: each image that is a key of images becomes its value. It fails if a
// key matches nothing, so a renamed image cannot be silently left upstream.
func SetImages(objs []*unstructured.Unstructured, images map[string]string) error {
	used := map[string]bool{}
	for _, o := range objs {
		err := eachContainer(o, func(c map[string]any) {
			if img, ok := c["image"].(string); ok {
				if repl, ok := images[img]; ok {
					c["image"] = repl
					used[img] = true
				}
			}
		})
		if err != nil {
			return err
		}
	}
	var missing []string
	for img := range images {
		if !used[img] {
			missing = append(missing, img)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("no container uses image %s", strings.Join(missing, ", "))
	}
	return nil
}

// Applier applies objects to a cluster.
type Applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	// DryRun has the API server validate and admit every object without
	// storing it (server-side dry run).
	DryRun bool
}

// NewApplier connects to the cluster of cfg.
func NewApplier(cfg *rest.Config) (*Applier, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// Apply server-side applies each object in order. After CRDs are applied,
// call Reset so their kinds become known.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				return fmt.Errorf("%s %s has no namespace", gvk.Kind, o.GetName())
			}
			ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
		if a.DryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Apply(ctx, o.GetName(), o, opts); err != nil {
			return fmt.Errorf("applying %s %s: %w", gvk.Kind, qualified(o), err)
		}
	}
	return nil
}

// Delete deletes each object, in reverse order; absent objects are fine.
func (a *Applier) Delete(ctx context.Context, objs []*unstructured.Unstructured) error {
	var errs []error
	for i := len(objs) - 1; i >= 0; i-- {
		o := objs[i]
		gvk := o.GroupVersionKind()
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			continue // its CRD is gone already
		}
		var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if err := ri.Delete(ctx, o.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting %s %s: %w", gvk.Kind, qualified(o), err))
		}
	}
	return errors.Join(errs...)
}

// ApplyTo applies objs to the cluster of cfg, with the images of SetImages
// replaced first.
func ApplyTo(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured, images map[string]string) error {
	if err := SetImages(objs, images); err != nil {
		return err
	}
	a, err := NewApplier(cfg)
	if err != nil {
		return err
	}
	return a.Apply(ctx, objs)
}

// Reset forgets cached API discovery (after new CRDs).
func (a *Applier) Reset() { a.mapper.Reset() }

func qualified(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetName()
	}
	return o.GetNamespace() + "/" + o.GetName()
}

// Images lists the container images of obj's pod template (or pod).
func Images(obj *unstructured.Unstructured) []string {
	var out []string
	_ = eachContainer(obj, func(c map[string]any) {
		if img, ok := c["image"].(string); ok {
			out = append(out, img)
		}
	})
	return out
}
