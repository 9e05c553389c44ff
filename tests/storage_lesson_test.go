package tests

// The lesson's storage: one default StorageClass, provisioned through a CSI
// driver, giving each database pod a namespaced claim bound to a
// cluster-scoped, node-local PV; and a snapshot of mongo-0's claim that
// restores the game's high scores.

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
	"github.com/stateful-conformance/stateful-conformance/pkg/labcheck"
	"github.com/stateful-conformance/stateful-conformance/pkg/mongocheck"
	"github.com/stateful-conformance/stateful-conformance/pkg/portforward"
)

const defaultClassAnnotation = "storageclass.kubernetes.io/is-default-class"

func TestDefaultClass(t *testing.T) {
	f := behaviour("storage/default-class", "default-class", false)
	var class, provisioner string
	f.Assess("exactly one StorageClass is the default, and it is the class the lab's claims use", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		classes, err := clientset(t, cfg).StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
		check(t, err)
		var defaults []string
		for _, sc := range classes.Items {
			if sc.Annotations[defaultClassAnnotation] == "true" {
				defaults = append(defaults, sc.Name)
				class, provisioner = sc.Name, sc.Provisioner
			}
		}
		if len(defaults) != 1 {
			fatalf(t, "the cluster has %d default StorageClasses %v, want exactly one (kubectl patch storageclass ... is-default-class)", len(defaults), defaults)
		}
		sts := statefulSet(ctx, t, cfg)
		if len(sts.Spec.VolumeClaimTemplates) == 0 {
			fatalf(t, "%s", labcheck.Explain("the lab's database claims nothing from the default class", liveLab(ctx, t, cfg).ClaimCause()))
		}
		for _, tpl := range sts.Spec.VolumeClaimTemplates {
			if c := ptr.Deref(tpl.Spec.StorageClassName, ""); c != "" && c != class {
				fatalf(t, "StatefulSet %s's claim template %s names class %s, not the default %s", sts.Name, tpl.Name, c, class)
			}
		}
		return ctx
	}).
		Assess("the default class's provisioner has a CSIDriver", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if provisioner == "" {
				fatalf(t, "no default class was found")
			}
			if _, err := clientset(t, cfg).StorageV1().CSIDrivers().Get(ctx, provisioner, metav1.GetOptions{}); err != nil {
				fatalf(t, "StorageClass %s's provisioner %s has no CSIDriver: %v", class, provisioner, err)
			}
			return ctx
		}).
		Assess("each mongo pod's claim is <template>-mongo-<ordinal> in the lab's namespace, bound to a cluster-scoped PV of that driver that pins the pod's node", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			sts := statefulSet(ctx, t, cfg)
			if len(sts.Spec.VolumeClaimTemplates) == 0 {
				fatalf(t, "%s", labcheck.Explain("the lab's database pods have no claims of their own", liveLab(ctx, t, cfg).ClaimCause()))
			}
			for i := 0; i < int(ptr.Deref(sts.Spec.Replicas, 1)); i++ {
				pod, err := cs.CoreV1().Pods(suite.lab.Namespace).Get(ctx, dbPod(i), metav1.GetOptions{})
				check(t, err)
				for _, tpl := range sts.Spec.VolumeClaimTemplates {
					name := fmt.Sprintf("%s-%s", tpl.Name, dbPod(i))
					pvc, err := cs.CoreV1().PersistentVolumeClaims(suite.lab.Namespace).Get(ctx, name, metav1.GetOptions{})
					if err != nil {
						fatalf(t, "claim %s of %s: %v", name, dbPod(i), err)
					}
					if ok, why := kube.PVCBound(pvc); !ok {
						fatalf(t, "%s", why)
					}
					pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
					check(t, err)
					check(t, volumeOfDriver(pv, provisioner, pod))
				}
			}
			return ctx
		}).Test(t)
}

// volumeOfDriver fails unless pv is cluster-scoped, provisioned by driver,
// and its node affinity admits pod's node (and only nodes with that
// topology value).
func volumeOfDriver(pv *corev1.PersistentVolume, driver string, pod *corev1.Pod) error {
	if pv.Namespace != "" {
		return fmt.Errorf("PV %s has namespace %s; PVs are cluster-scoped", pv.Name, pv.Namespace)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driver {
		return fmt.Errorf("PV %s is not provisioned by CSI driver %s: %+v", pv.Name, driver, pv.Spec.PersistentVolumeSource)
	}
	na := pv.Spec.NodeAffinity
	if na == nil || na.Required == nil || len(na.Required.NodeSelectorTerms) == 0 {
		return fmt.Errorf("PV %s has no node affinity, yet its data lives on one node", pv.Name)
	}
	if pod.Spec.NodeName == "" {
		return fmt.Errorf("pod %s is not on a node", pod.Name)
	}
	for _, term := range na.Required.NodeSelectorTerms {
		for _, e := range term.MatchExpressions {
			if e.Operator == corev1.NodeSelectorOpIn && len(e.Values) > 0 {
				return nil
			}
		}
	}
	return fmt.Errorf("PV %s's node affinity %+v pins no node", pv.Name, na.Required.NodeSelectorTerms)
}

func TestSnapshotRestore(t *testing.T) {
	f := behaviour("storage/snapshot-restore", "snapshot-restore", false)
	name := "snapshot-" + envconf.RandomName("", 6)
	snap := "mongo-0-" + name
	restored := snap + "-restored"
	snapReady := false
	f.Assess("a VolumeSnapshot of mongo-0's claim becomes ReadyToUse", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		cs := clientset(t, cfg)
		if _, err := cs.Discovery().ServerResourcesForGroupVersion("snapshot.storage.k8s.io/v1"); err != nil {
			skipf(t, "the cluster serves no snapshot API (snapshot.storage.k8s.io/v1): %v", err)
		}
		check(t, openGame(ctx, t, cfg).postScore(ctx, name, 7))
		found, err := dialDB(ctx, t, cfg, dbPod(0)).HighScores(ctx, []string{name})
		check(t, err)
		if !found[name] {
			fatalf(t, "%s", labcheck.Explain("a score acknowledged by the game is not on mongo-0", liveLab(ctx, t, cfg).WriterCause()))
		}
		sts := statefulSet(ctx, t, cfg)
		if len(sts.Spec.VolumeClaimTemplates) == 0 {
			fatalf(t, "%s", labcheck.Explain("mongo-0 has no claim to snapshot", liveLab(ctx, t, cfg).ClaimCause()))
		}
		claim := fmt.Sprintf("%s-%s", sts.Spec.VolumeClaimTemplates[0].Name, dbPod(0))
		check(t, snapshot(ctx, cfg, suite.lab.Namespace, snap, claim))
		snapReady = true
		return ctx
	}).
		Assess("a claim restored from it, mounted by a temporary database pod, serves the same high score", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if !snapReady {
				skipf(t, "no ready snapshot of mongo-0's claim to restore (see the assessment before)")
			}
			cs := clientset(t, cfg)
			sts := statefulSet(ctx, t, cfg)
			tpl := sts.Spec.VolumeClaimTemplates[0]
			size := tpl.Spec.Resources.Requests[corev1.ResourceStorage]
			pvc := claim(restored, size.String(), corev1.ReadWriteOnce)
			pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: snap}
			_, err := bindClaim(ctx, cs, suite.lab.Namespace, pvc)
			check(t, err)
			// The lab's own database container, on the restored claim, with no
			// labels: no Service sends it traffic.
			spec := sts.Spec.Template.Spec.DeepCopy()
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: tpl.Name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: restored}}})
			spec.Hostname, spec.Subdomain = "", ""
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: restored}, Spec: *spec}
			_, err = cs.CoreV1().Pods(suite.lab.Namespace).Create(ctx, pod, metav1.CreateOptions{})
			check(t, err)
			t.Cleanup(func() { _ = deletePod(context.Background(), cs, suite.lab.Namespace, restored) })
			wait, cancel := context.WithTimeout(ctx, podReadyBound)
			defer cancel()
			check(t, kube.WaitForPodReady(wait, cs, suite.lab.Namespace, restored))
			fw, err := portforward.ToPod(ctx, cfg.Client().RESTConfig(), suite.lab.Namespace, restored, 27017)
			check(t, err)
			defer fw.Close()
			db, err := mongocheck.Dial(ctx, fw.Addr, dbCredentials(ctx, t, cfg))
			check(t, err)
			defer db.Close()
			found, err := db.HighScores(ctx, []string{name})
			check(t, err)
			if !found[name] {
				fatalf(t, "the database on the claim restored from snapshot %s lacks the high score %s that mongo-0 held", snap, name)
			}
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			_ = deletePod(ctx, cs, suite.lab.Namespace, restored)
			_ = cs.CoreV1().PersistentVolumeClaims(suite.lab.Namespace).Delete(ctx, restored, metav1.DeleteOptions{})
			deleteSnapshot(ctx, t, cfg, suite.lab.Namespace, snap)
			return ctx
		}).Test(t)
}
