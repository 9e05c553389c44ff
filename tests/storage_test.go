package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/stateful-conformance/stateful-conformance/pkg/addons"
	"github.com/stateful-conformance/stateful-conformance/pkg/cluster"
	"github.com/stateful-conformance/stateful-conformance/pkg/csihostpath"
	"github.com/stateful-conformance/stateful-conformance/pkg/docker"
	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
)

var volumeSnapshots = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}

// The CSI hostpath storage the lab's database runs on, as the lesson sets
// it up: the default class provisions through the driver, data outlives
// pods, claims clean up after themselves, snapshots restore, claims grow,
// and impossible claims say why.
func TestStorage(t *testing.T) {
	var ns string
	f := features.New("CSI hostpath storage").WithLabel("area", "storage").
		Setup(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			ns = createNamespace(ctx, t, cfg, "storage")
			return ctx
		}).
		Assess("a claim on the default class binds through the CSI driver", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			pv, err := bindClaim(ctx, clientset(t, cfg), ns, claim("data", "1Gi", corev1.ReadWriteOnce))
			check(t, err)
			if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != csihostpath.DriverName {
				t.Fatalf("PV %s is not provisioned by %s: %+v", pv.Name, csihostpath.DriverName, pv.Spec.PersistentVolumeSource)
			}
			if pv.Spec.StorageClassName != addons.StorageClass {
				t.Fatalf("PV %s has class %q, want %s", pv.Name, pv.Spec.StorageClassName, addons.StorageClass)
			}
			return ctx
		}).
		Assess("a file written by one pod is read by the next pod on the same claim", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			check(t, dataOutlivesPods(ctx, cfg, ns, "data"))
			return ctx
		}).
		Assess("deleting the claim deletes its PersistentVolume and directory", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
			check(t, err)
			pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
			check(t, err)
			dir := csihostpath.DefaultDataDir + "/volumes/" + pv.Spec.CSI.VolumeHandle
			if suite.kindCluster != "" {
				_, err := docker.Run(ctx, "exec", kindNode(t), "test", "-d", dir)
				check(t, err)
			}
			check(t, cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data", metav1.DeleteOptions{}))
			wait, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			check(t, kube.WaitGone(wait, kube.ListWatch(cs.CoreV1().RESTClient(), "persistentvolumes", "", pv.Name), &corev1.PersistentVolume{}))
			if suite.kindCluster != "" {
				if _, err := docker.Run(ctx, "exec", kindNode(t), "test", "-e", dir); err == nil {
					t.Fatalf("PV %s is gone but its directory %s is still on the node", pv.Name, dir)
				}
			}
			return ctx
		}).
		Assess("a snapshot becomes ready and a claim restored from it holds the same bytes", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			check(t, restoreHoldsSnapshot(ctx, cfg, ns, "origin"))
			return ctx
		}).
		Assess("a claim expanded from 1Gi to 2Gi reports 2Gi", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			_, err := bindClaim(ctx, cs, ns, claim("grow", "1Gi", corev1.ReadWriteOnce))
			check(t, err)
			patch := `{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}`
			_, err = cs.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "grow", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			check(t, err)
			want := resource.MustParse("2Gi")
			wait, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			check(t, kube.WaitForPVC(wait, cs, ns, "grow", func(c *corev1.PersistentVolumeClaim) (bool, string) {
				got := c.Status.Capacity[corev1.ResourceStorage]
				return got.Cmp(want) == 0, fmt.Sprintf("claim grow reports %s", got.String())
			}))
			return ctx
		}).
		Assess("a claim larger than the node's free space gets a clear provisioning error", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			expectProvisioningError(ctx, t, clientset(t, cfg), ns, claim("huge", "100Ti", corev1.ReadWriteOnce), "free on node")
			return ctx
		}).
		Assess("a claim with an access mode the driver cannot serve gets a clear provisioning error", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			expectProvisioningError(ctx, t, clientset(t, cfg), ns, claim("shared", "1Gi", corev1.ReadWriteMany), "is not supported")
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			deleteNamespace(ctx, t, clientset(t, cfg), ns)
			return ctx
		}).Feature()
	testenv.Test(t, f)
}

func claim(name, size string, mode corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{mode},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
}

// bindClaim creates pvc and waits until it is bound; it returns the volume.
func bindClaim(ctx context.Context, cs kubernetes.Interface, ns string, pvc *corev1.PersistentVolumeClaim) (*corev1.PersistentVolume, error) {
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := kube.WaitForPVC(wait, cs, ns, pvc.Name, kube.PVCBound); err != nil {
		return nil, err
	}
	got, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, pvc.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return cs.CoreV1().PersistentVolumes().Get(ctx, got.Spec.VolumeName, metav1.GetOptions{})
}

// dataOutlivesPods fails unless a file one pod writes on claim claimName
// (created here) is read back by the next pod on the same claim.
func dataOutlivesPods(ctx context.Context, cfg *envconf.Config, ns, claimName string) error {
	cs, err := cluster.Clientset(cfg.KubeconfigFile())
	if err != nil {
		return err
	}
	if _, err := bindClaim(ctx, cs, ns, claim(claimName, "1Gi", corev1.ReadWriteOnce)); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	text := "high score " + envconf.RandomName("", 8)
	writer, reader := claimName+"-writer", claimName+"-reader"
	if err := runVolumePod(ctx, cs, ns, writer, claimName); err != nil {
		return err
	}
	if _, err := podExec(cfg)(ctx, ns, writer, "/probe", "write", "/data/hello", text); err != nil {
		return err
	}
	if err := deletePod(ctx, cs, ns, writer); err != nil {
		return err
	}
	if err := runVolumePod(ctx, cs, ns, reader, claimName); err != nil {
		return err
	}
	defer deletePod(ctx, cs, ns, reader)
	got, err := podExec(cfg)(ctx, ns, reader, "/probe", "read", "/data/hello")
	if err != nil {
		return fmt.Errorf("the next pod on claim %s cannot read what the first wrote: %w", claimName, err)
	}
	if got != text {
		return fmt.Errorf("the next pod on claim %s reads %q, want %q", claimName, got, text)
	}
	return nil
}

// restoreHoldsSnapshot fails unless a claim restored from a snapshot of
// claim <prefix> holds what the claim held when the snapshot was taken.
func restoreHoldsSnapshot(ctx context.Context, cfg *envconf.Config, ns, prefix string) error {
	cs, err := cluster.Clientset(cfg.KubeconfigFile())
	if err != nil {
		return err
	}
	ex := podExec(cfg)
	if _, err := bindClaim(ctx, cs, ns, claim(prefix, "1Gi", corev1.ReadWriteOnce)); err != nil {
		return err
	}
	if err := runVolumePod(ctx, cs, ns, prefix, prefix); err != nil {
		return err
	}
	defer deletePod(ctx, cs, ns, prefix)
	if _, err := ex(ctx, ns, prefix, "/probe", "write", "/data/scores", "inky 3000"); err != nil {
		return err
	}
	if err := snapshot(ctx, cfg, ns, prefix+"-snap", prefix); err != nil {
		return err
	}
	// Written after the snapshot: the restore must not have it.
	if _, err := ex(ctx, ns, prefix, "/probe", "write", "/data/scores", "overwritten"); err != nil {
		return err
	}
	restored := claim(prefix+"-restored", "1Gi", corev1.ReadWriteOnce)
	restored.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: prefix + "-snap"}
	if _, err := bindClaim(ctx, cs, ns, restored); err != nil {
		return err
	}
	if err := runVolumePod(ctx, cs, ns, restored.Name, restored.Name); err != nil {
		return err
	}
	defer deletePod(ctx, cs, ns, restored.Name)
	got, err := ex(ctx, ns, restored.Name, "/probe", "read", "/data/scores")
	if err != nil {
		return fmt.Errorf("the claim restored from snapshot %s-snap lacks the snapshot's file: %w", prefix, err)
	}
	if got != "inky 3000" {
		return fmt.Errorf("the restored claim holds %q, want the snapshot's %q", got, "inky 3000")
	}
	return nil
}

// expectProvisioningError creates pvc and waits for the provisioner's
// ProvisioningFailed event, whose message must contain want.
func expectProvisioningError(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string, pvc *corev1.PersistentVolumeClaim, want string) {
	t.Helper()
	_, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
	check(t, err)
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	msg, err := kube.WaitForEvent(wait, cs, ns, pvc.Name, "ProvisioningFailed")
	check(t, err)
	if !strings.Contains(msg, want) {
		t.Fatalf("claim %s failed with %q, want a message containing %q", pvc.Name, msg, want)
	}
	got, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, pvc.Name, metav1.GetOptions{})
	check(t, err)
	if got.Status.Phase == corev1.ClaimBound {
		t.Fatalf("claim %s is bound despite the error", pvc.Name)
	}
}

// runVolumePod starts a probe pod with claim mounted at /data and waits
// until it is ready.
func runVolumePod(ctx context.Context, cs kubernetes.Interface, ns, name, claimName string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "probe", Image: suite.probe, Args: []string{"sleep"}, ImagePullPolicy: corev1.PullIfNotPresent,
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName}}}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return kube.WaitForPodReady(wait, cs, ns, name)
}

// deletePod deletes a pod and waits until it is gone (its volumes unpublished).
func deletePod(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return kube.WaitGone(wait, kube.ListWatch(cs.CoreV1().RESTClient(), "pods", ns, name), &corev1.Pod{})
}

// createNamespace makes a namespace named prefix plus a random suffix.
func createNamespace(ctx context.Context, t *testing.T, cfg *envconf.Config, prefix string) string {
	t.Helper()
	ns := envconf.RandomName(prefix, len(prefix)+7)
	_, err := clientset(t, cfg).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	check(t, err)
	return ns
}

func deleteNamespace(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) {
	if ns == "" {
		return
	}
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Logf("deleting namespace %s: %v", ns, err)
	}
}

// snapshot takes VolumeSnapshot name of claim and waits until it is ready.
func snapshot(ctx context.Context, cfg *envconf.Config, ns, name, claimName string) error {
	dyn, err := dynamic.NewForConfig(cfg.Client().RESTConfig())
	if err != nil {
		return err
	}
	snap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1",
		"kind":       "VolumeSnapshot",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"volumeSnapshotClassName": addons.SnapshotClass,
			"source":                  map[string]any{"persistentVolumeClaimName": claimName},
		},
	}}
	client := dyn.Resource(volumeSnapshots).Namespace(ns)
	if _, err := client.Create(ctx, snap, metav1.CreateOptions{}); err != nil {
		return err
	}
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = "metadata.name=" + name
			return client.List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = "metadata.name=" + name
			return client.Watch(ctx, o)
		},
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return kube.WaitForAll(wait, lw, &unstructured.Unstructured{}, func(u *unstructured.Unstructured) (bool, string) {
		ready, _, _ := unstructured.NestedBool(u.Object, "status", "readyToUse")
		msg, _, _ := unstructured.NestedString(u.Object, "status", "error", "message")
		return ready, fmt.Sprintf("snapshot %s not ready %s", name, msg)
	})
}

// deleteSnapshot deletes VolumeSnapshot name, if there.
func deleteSnapshot(ctx context.Context, t *testing.T, cfg *envconf.Config, ns, name string) {
	dyn, err := dynamic.NewForConfig(cfg.Client().RESTConfig())
	if err != nil {
		t.Logf("deleting snapshot %s: %v", name, err)
		return
	}
	if err := dyn.Resource(volumeSnapshots).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Logf("deleting snapshot %s: %v", name, err)
	}
}

// The storage checks above must fail on a broken driver. This feature runs
// them against the plugin started with each fault of
// tests/testdata/csi-hostpath-faults.md, expects each to fail, and puts the
// plugin back as it was.
func TestStorageCatchesBrokenPlugins(t *testing.T) {
	var ns string
	f := features.New("storage checks catch a broken CSI plugin").WithLabel("area", "storage").
		Setup(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			ns = createNamespace(ctx, t, cfg, "broken-storage")
			return ctx
		}).
		Assess("a plugin that publishes empty volumes fails the persistence check", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			check(t, setPluginFault(ctx, clientset(t, cfg), csihostpath.FaultPublishEmpty))
			err := dataOutlivesPods(ctx, cfg, ns, "forgetful")
			if err == nil {
				t.Fatal("the persistence check passed on a plugin whose volumes keep nothing")
			}
			t.Logf("caught: %v", err)
			return ctx
		}).
		Assess("a plugin whose restores come back empty fails the restore check", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			check(t, setPluginFault(ctx, clientset(t, cfg), csihostpath.FaultRestoreEmpty))
			err := restoreHoldsSnapshot(ctx, cfg, ns, "amnesiac")
			if err == nil {
				t.Fatal("the restore check passed on a plugin whose restores are empty")
			}
			t.Logf("caught: %v", err)
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			deleteNamespace(ctx, t, cs, ns)
			check(t, setPluginFault(ctx, cs, ""))
			return ctx
		}).Feature()
	testenv.Test(t, f)
}

// setPluginFault restarts the plugin with --fault=fault (none when empty)
// and waits until it serves and has registered again.
func setPluginFault(ctx context.Context, cs kubernetes.Interface, fault string) error {
	ds, err := cs.AppsV1().DaemonSets(addons.CSINamespace).Get(ctx, "csi-hostpath-plugin", metav1.GetOptions{})
	if err != nil {
		return err
	}
	changed := false
	for i, c := range ds.Spec.Template.Spec.Containers {
		if c.Name != "hostpath" {
			continue
		}
		var args []string
		for _, a := range c.Args {
			if !strings.HasPrefix(a, "--fault=") {
				args = append(args, a)
			}
		}
		if fault != "" {
			args = append(args, "--fault="+fault)
		}
		changed = strings.Join(args, " ") != strings.Join(c.Args, " ")
		ds.Spec.Template.Spec.Containers[i].Args = args
	}
	if !changed {
		return nil
	}
	if _, err := cs.AppsV1().DaemonSets(addons.CSINamespace).Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := kube.WaitForDaemonSet(wait, cs, addons.CSINamespace, "csi-hostpath-plugin"); err != nil {
		return err
	}
	return kube.WaitForCSIDriverOnNodes(wait, cs, csihostpath.DriverName)
}
