// Package addons installs what the lab needs into a cluster: the CSI hostpath
// storage stack (and, later, the ingress controller). Installs are idempotent
// (server-side apply) and wait on watches until what they installed works.
package addons

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/stateful-conformance/stateful-conformance/pkg/buildcache"
	"github.com/stateful-conformance/stateful-conformance/pkg/csihostpath"
	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
	"github.com/stateful-conformance/stateful-conformance/pkg/localimage"
	"github.com/stateful-conformance/stateful-conformance/pkg/manifest"
)

// Options say where to install and where images come from.
type Options struct {
	// RepoRoot is the project's checkout (manifests/ and images/).
	RepoRoot string
	Cache    *buildcache.Cache
	// Config reaches the cluster.
	Config *rest.Config
	// KindCluster names the kind cluster to load locally built images into;
	// empty for a cluster that is not kind (then Source must be false).
	KindCluster string
	// Source builds the sidecar images here instead of pulling upstream's.
	Source bool
	Log    io.Writer
	// Timeout bounds the wait for the stack to be ready.
	Timeout time.Duration
}

// CSIHostpath names what InstallCSIHostpath installs.
const (
	CSINamespace      = "csi-hostpath"
	StorageClass      = "csi-hostpath-sc"
	SnapshotClass     = "csi-hostpath-snapclass"
	defaultClassLabel = "storageclass.kubernetes.io/is-default-class"
)

// sidecars are the upstream images the manifests name, with the wrapper
// module and package each is built from when building from source.
var sidecars = []struct {
	upstream string
	prog     localimage.Program
}{
	{"registry.k8s.io/sig-storage/csi-provisioner:v6.3.0", localimage.Program{Name: "csi-provisioner", Module: "images/csi-provisioner", Package: "github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner", User: "0", Version: "v6.3.0"}},
	{"registry.k8s.io/sig-storage/csi-snapshotter:v8.7.0", localimage.Program{Name: "csi-snapshotter", Module: "images/csi-snapshotter", Package: "github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter", User: "0", Version: "v8.7.0"}},
	{"registry.k8s.io/sig-storage/snapshot-controller:v8.7.0", localimage.Program{Name: "snapshot-controller", Module: "images/csi-snapshotter", Package: "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller", User: "0", Version: "v8.7.0"}},
	{"registry.k8s.io/sig-storage/csi-resizer:v2.3.0", localimage.Program{Name: "csi-resizer", Module: "images/csi-resizer", Package: "github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer", User: "0", Version: "v2.3.0"}},
}

// pluginImage is the name the manifests give the plugin, always built here.
const pluginImage = "stateful-conformance/csi-hostpath:latest"

// InstallCSIHostpath installs the hostpath CSI driver with its sidecars, the
// snapshot CRDs and controller, StorageClass csi-hostpath-sc and
// VolumeSnapshotClass csi-hostpath-snapclass; waits until the plugin has
// registered on every node; then makes csi-hostpath-sc the only default
// StorageClass, as the lesson does.
func InstallCSIHostpath(ctx context.Context, o Options) error {
	start := time.Now()
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	fmt.Fprintln(o.Log, "• installing CSI hostpath storage")
	images, err := csiImages(ctx, o)
	if err != nil {
		return err
	}
	applier, err := manifest.NewApplier(o.Config)
	if err != nil {
		return err
	}
	crds, err := snapshotCRDs(ctx, o.RepoRoot)
	if err != nil {
		return err
	}
	if err := applier.Apply(ctx, crds); err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := waitEstablished(wait, o.Config, crds); err != nil {
		return fmt.Errorf("snapshot CRDs: %w", err)
	}
	objs, err := manifest.ReadDir(filepath.Join(o.RepoRoot, "manifests/csi-hostpath"))
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
	if err := kube.WaitForWorkloads(wait, cs, objs); err != nil {
		return fmt.Errorf("CSI hostpath storage: %w", err)
	}
	if err := kube.WaitForCSIDriverOnNodes(wait, cs, csihostpath.DriverName); err != nil {
		return fmt.Errorf("CSI hostpath plugin: %w", err)
	}
	if err := MakeDefaultStorageClass(ctx, cs, StorageClass); err != nil {
		return err
	}
	fmt.Fprintf(o.Log, "• CSI hostpath storage ready in %s (driver %s registered, %s is the default StorageClass)\n",
		time.Since(start).Round(100*time.Millisecond), csihostpath.DriverName, StorageClass)
	return nil
}

// csiImages maps the manifests' image names to the ones to run, building
// (and loading into kind) what comes from source.
func csiImages(ctx context.Context, o Options) (map[string]string, error) {
	if o.KindCluster == "" {
		return nil, fmt.Errorf("the CSI hostpath plugin image is built here and can only be loaded into a kind cluster: run against the suite's kind cluster (--cluster-name)")
	}
	progs := map[string]localimage.Program{pluginImage: {Name: "csi-hostpath", User: "0"}}
	if o.Source {
		for _, s := range sidecars {
			progs[s.upstream] = s.prog
		}
	}
	return localimage.BuildAll(ctx, o.RepoRoot, o.Cache, o.KindCluster, progs, o.Log)
}

// snapshotCRDs reads the VolumeSnapshot CRDs that external-snapshotter's
// client module ships, at the version the wrapper module pins.
func snapshotCRDs(ctx context.Context, repoRoot string) ([]*unstructured.Unstructured, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/kubernetes-csi/external-snapshotter/client/v8")
	cmd.Dir = filepath.Join(repoRoot, "images/csi-snapshotter")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("locating external-snapshotter's CRDs in the module cache: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config/crd")
	var files []string
	for _, kind := range []string{"volumesnapshotclasses", "volumesnapshotcontents", "volumesnapshots"} {
		files = append(files, filepath.Join(dir, "snapshot.storage.k8s.io_"+kind+".yaml"))
	}
	return manifest.ReadFiles(files...)
}

func waitEstablished(ctx context.Context, cfg *rest.Config, crds []*unstructured.Unstructured) error {
	client, err := apiextensions.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, crd := range crds {
		lw := kube.ListWatch(client.ApiextensionsV1().RESTClient(), "customresourcedefinitions", "", crd.GetName())
		err := kube.WaitForAll(ctx, lw, &apiextensionsv1.CustomResourceDefinition{}, func(c *apiextensionsv1.CustomResourceDefinition) (bool, string) {
			for _, cond := range c.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, ""
				}
			}
			return false, "CRD " + c.Name + " not established"
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// MakeDefaultStorageClass marks class as the default StorageClass and takes
// the mark off every other, as the lesson's two kubectl patches do (its
// other default is kind's or minikube's "standard").
func MakeDefaultStorageClass(ctx context.Context, cs kubernetes.Interface, class string) error {
	classes, err := cs.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	patch := func(name, value string) error {
		body := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, defaultClassLabel, value)
		_, err := cs.StorageV1().StorageClasses().Patch(ctx, name, types.MergePatchType, []byte(body), metav1.PatchOptions{FieldManager: manifest.FieldManager})
		return err
	}
	found := false
	for _, sc := range classes.Items {
		switch {
		case sc.Name == class:
			found = true
		case sc.Annotations[defaultClassLabel] == "true":
			if err := patch(sc.Name, "false"); err != nil {
				return err
			}
		}
	}
	if !found {
		return fmt.Errorf("StorageClass %s does not exist", class)
	}
	return patch(class, "true")
}
