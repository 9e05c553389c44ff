package tests

// The StatefulSet's promises, as the lesson teaches them: stable names and
// hostnames, ordered creation and removal, a fixed DNS name per pod, and a
// claim per pod that outlives the pod and a scale-down.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
	"github.com/stateful-conformance/stateful-conformance/pkg/labcheck"
	"github.com/stateful-conformance/stateful-conformance/pkg/podorder"
)

func TestStableIdentity(t *testing.T) {
	f := behaviour("statefulset/stable-identity", "stable-identity", true)
	f.Assess("the set's pods are exactly mongo-0 and mongo-1, owned by the StatefulSet", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		sts := statefulSet(ctx, t, cfg)
		pods, err := podsOf(ctx, clientset(t, cfg), sts.Spec.Selector)
		check(t, err)
		var names []string
		for _, p := range pods {
			names = append(names, p.Name)
			if ref := metav1.GetControllerOf(&p); ref == nil || ref.Kind != "StatefulSet" || ref.Name != sts.Name {
				fatalf(t, "pod %s is not controlled by StatefulSet %s", p.Name, sts.Name)
			}
		}
		want := []string{dbPod(0), dbPod(1)}
		if strings.Join(names, " ") != strings.Join(want, " ") {
			fatalf(t, "StatefulSet %s's pods are [%s], want [%s] (it asks for %d replicas)", sts.Name, strings.Join(names, " "), strings.Join(want, " "), ptr.Deref(sts.Spec.Replicas, 1))
		}
		return ctx
	}).
		Assess("each pod's hostname, in the pod and in its spec, is its name", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			for _, name := range []string{dbPod(0), dbPod(1)} {
				p, err := cs.CoreV1().Pods(suite.lab.Namespace).Get(ctx, name, metav1.GetOptions{})
				check(t, err)
				if p.Spec.Hostname != name {
					fatalf(t, "pod %s has spec.hostname %q, want %q", name, p.Spec.Hostname, name)
				}
				got, err := hostnameInPod(ctx, cs, p)
				check(t, err)
				if got != name {
					fatalf(t, "hostname inside pod %s is %q, want %q", name, got, name)
				}
			}
			return ctx
		}).
		Assess("deleting mongo-0 brings back a pod named mongo-0 with a new UID on the same claim", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			old, repl, took, err := replacePod(ctx, clientset(t, cfg), dbPod(0), podReadyBound)
			check(t, err)
			if repl.Name != old.Name || repl.UID == old.UID {
				fatalf(t, "after deleting %s (UID %s) the set has %s (UID %s)", old.Name, old.UID, repl.Name, repl.UID)
			}
			if claimOf(repl) == "" || claimOf(repl) != claimOf(old) {
				fatalf(t, "%s", labcheck.Explain(fmt.Sprintf("the new %s mounts claim %q, the old one mounted %q", repl.Name, claimOf(repl), claimOf(old)), liveLab(ctx, t, cfg).ClaimCause()))
			}
			f.figure(t, "mongo-0 deleted to Ready again", took)
			return ctx
		}).
		Assess("a deleted pacman pod comes back under a new generated name (a Deployment's pods are interchangeable)", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			l := liveLab(ctx, t, cfg)
			if l.Frontend == nil {
				fatalf(t, "the lab has no Deployment %s", suite.lab.Frontend)
			}
			pods, err := podsOf(ctx, cs, l.Frontend.Spec.Selector)
			check(t, err)
			if len(pods) == 0 {
				fatalf(t, "Deployment %s has no pods", l.Frontend.Name)
			}
			old := pods[0]
			check(t, cs.CoreV1().Pods(suite.lab.Namespace).Delete(ctx, old.Name, metav1.DeleteOptions{}))
			wait, cancel := context.WithTimeout(ctx, podReadyBound)
			defer cancel()
			check(t, kube.WaitForDeployment(wait, cs, suite.lab.Namespace, l.Frontend.Name))
			pods, err = podsOf(ctx, cs, l.Frontend.Spec.Selector)
			check(t, err)
			for _, p := range pods {
				if p.Name == old.Name && p.DeletionTimestamp == nil {
					fatalf(t, "pod %s came back under its old name", old.Name)
				}
				if p.DeletionTimestamp == nil && p.GenerateName == "" {
					fatalf(t, "pod %s has no generated name", p.Name)
				}
			}
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			restoreLab(ctx, t, cfg, suite.dbReplicas, suite.frontendReplicas)
			return ctx
		}).Test(t)
}

// hostnameInPod runs `probe hostname` in an ephemeral container of pod
// (containers of a pod share its UTS namespace), which works on any image.
func hostnameInPod(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod) (string, error) {
	name := "hostname-" + envconf.RandomName("", 5)
	p = p.DeepCopy()
	p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: name, Image: suite.probe, Args: []string{"hostname"}, ImagePullPolicy: corev1.PullIfNotPresent,
	}})
	if _, err := cs.CoreV1().Pods(p.Namespace).UpdateEphemeralContainers(ctx, p.Name, p, metav1.UpdateOptions{}); err != nil {
		return "", fmt.Errorf("ephemeral container in %s: %w", p.Name, err)
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := kube.WaitForAll(wait, kube.ListWatch(cs.CoreV1().RESTClient(), "pods", p.Namespace, p.Name), &corev1.Pod{}, func(p *corev1.Pod) (bool, string) {
		for _, st := range p.Status.EphemeralContainerStatuses {
			if st.Name == name && st.State.Terminated != nil {
				return true, ""
			}
		}
		return false, fmt.Sprintf("ephemeral container %s of %s has not run", name, p.Name)
	})
	if err != nil {
		return "", fmt.Errorf("within 1m: %w", err)
	}
	out, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: name}).DoRaw(ctx)
	return strings.TrimSpace(string(out)), err
}

// haltWindow is how long a scale-up must create nothing while a lower
// ordinal is unready.
const haltWindow = 5 * time.Second

func TestOrderedCreation(t *testing.T) {
	f := behaviour("statefulset/ordered-creation", "ordered-creation", true)
	var rec *podorder.Recorder
	order := func(t *testing.T, cfg *envconf.Config, err error) {
		t.Helper()
		if err != nil {
			fatalf(t, "%s", labcheck.Explain(err.Error(), liveLab(context.Background(), t, cfg).OrderCause()))
		}
	}
	f.Assess("from zero replicas, mongo-1 is created only after mongo-0 is Ready, and 2 -> 3 creates mongo-2 only after mongo-1 is Ready", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		cs := clientset(t, cfg)
		sts := statefulSet(ctx, t, cfg)
		check(t, scaleStatefulSet(ctx, cs, 0, podGoneBound))
		sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
		check(t, err)
		rec, err = podorder.Start(ctx, cs, suite.lab.Namespace, sel.String())
		check(t, err)
		check(t, waitClaimsReusable(ctx, cs, 3, podGoneBound))
		check(t, requestScale(ctx, cs, 2))
		// Ask for a third pod as soon as mongo-1 exists, while it is not yet
		// Ready: OrderedReady must hold mongo-2 back until it is.
		wait, cancel := context.WithTimeout(ctx, podReadyBound)
		defer cancel()
		_, err = rec.WaitFor(wait, dbPod(1), podorder.Created)
		check(t, err)
		check(t, requestScale(ctx, cs, 3))
		check(t, waitStatefulSetAt(ctx, cs, 3, podReadyBound))
		// The set's status may run ahead of this watch: the order is judged
		// once the watch has seen mongo-2 Ready too.
		_, err = rec.WaitFor(wait, dbPod(2), podorder.Ready)
		check(t, err)
		events, err := rec.Events()
		check(t, err)
		for _, e := range events {
			t.Log(e)
		}
		order(t, cfg, podorder.CreatedAfterReady(events, dbPod(0), dbPod(1)))
		order(t, cfg, podorder.CreatedAfterReady(events, dbPod(1), dbPod(2)))
		gaps := detectionGaps(events)
		f.figure(t, "watch detection gap, Ready condition to seen (median, upper bound)", median(gaps))
		return ctx
	}).
		Assess("3 -> 1 removes mongo-2 before mongo-1", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if rec == nil {
				fatalf(t, "no pod watch: the previous assessment did not get the set to 3 pods")
			}
			check(t, scaleStatefulSet(ctx, clientset(t, cfg), 1, podGoneBound))
			wait, cancel := context.WithTimeout(ctx, podGoneBound)
			defer cancel()
			for _, pod := range []string{dbPod(2), dbPod(1)} {
				_, err := rec.WaitFor(wait, pod, podorder.Deleted)
				check(t, err)
			}
			events, err := rec.Events()
			check(t, err)
			order(t, cfg, podorder.RemovedBefore(events, dbPod(2), dbPod(1)))
			return ctx
		}).
		Assess(fmt.Sprintf("while a lower ordinal is unready, a scale-up creates nothing for %s (proved on the suite's own StatefulSet with the lab's pod management policy)", haltWindow), func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			sts := statefulSet(ctx, t, cfg)
			policy := sts.Spec.PodManagementPolicy
			if policy == "" {
				policy = appsv1.OrderedReadyPodManagement
			}
			// The lab's images give no way to make a pod unready from outside,
			// so the halt is proved on a set whose readiness the test controls.
			t.Logf("ran on the suite's own StatefulSet halt, with podManagementPolicy %s copied from %s", policy, sts.Name)
			f.figure(t, "unready halt proved on", "the suite's own StatefulSet halt, podManagementPolicy "+string(policy))
			check(t, haltWhileUnready(ctx, t, cfg, policy))
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if rec != nil {
				rec.Stop()
			}
			restoreLab(ctx, t, cfg, suite.dbReplicas, suite.frontendReplicas)
			// mongo-2's claim outlives it (as the lesson teaches); the lab's
			// manifests have no third pod, so its claim goes.
			deleteExtraClaims(ctx, t, cfg)
			return ctx
		}).Test(t)
}

// haltWhileUnready makes StatefulSet halt (policy, one replica, readiness
// by a file the test writes) in a namespace of its own, scales it to 2
// while halt-0 is unready and requires that nothing is created for
// haltWindow, then that halt-1 comes only after halt-0 is Ready.
func haltWhileUnready(ctx context.Context, t *testing.T, cfg *envconf.Config, policy appsv1.PodManagementPolicyType) error {
	cs := clientset(t, cfg)
	ns := createNamespace(ctx, t, cfg, "halt")
	defer deleteNamespace(ctx, t, cs, ns)
	labels := map[string]string{"app": "halt"}
	probe := corev1.Container{
		Name: "probe", Image: suite.probe, Args: []string{"serve", ":8080"}, ImagePullPolicy: corev1.PullIfNotPresent,
		ReadinessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/probe", "read", "/state/ready"}}}, PeriodSeconds: 1},
		LivenessProbe:   &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}}},
		SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), RunAsNonRoot: ptr.To(true)},
		VolumeMounts:    []corev1.VolumeMount{{Name: "state", MountPath: "/state"}},
	}
	_, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "halt"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels, Ports: []corev1.ServicePort{{Port: 8080}}}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	_, err = cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "halt"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), ServiceName: "halt", PodManagementPolicy: policy,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{probe}, TerminationGracePeriodSeconds: ptr.To[int64](0),
					Volumes: []corev1.Volume{{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	rec, err := podorder.Start(ctx, cs, ns, "app=halt")
	if err != nil {
		return err
	}
	defer rec.Stop()
	wait, cancel := context.WithTimeout(ctx, podReadyBound)
	defer cancel()
	if err := kube.WaitForAll(wait, kube.ListWatch(cs.CoreV1().RESTClient(), "pods", ns, "halt-0"), &corev1.Pod{}, func(p *corev1.Pod) (bool, string) {
		return p.Status.Phase == corev1.PodRunning, "halt-0 is " + string(p.Status.Phase)
	}); err != nil {
		return err
	}
	before, _ := rec.Events()
	if _, err := cs.AppsV1().StatefulSets(ns).UpdateScale(ctx, "halt", scaleTo(ns, "halt", 2), metav1.UpdateOptions{}); err != nil {
		return err
	}
	window, cancelWindow := context.WithTimeout(ctx, haltWindow)
	_, err = rec.WaitFor(window, "halt-1", podorder.Created)
	cancelWindow()
	if err == nil {
		events, _ := rec.Events()
		return fmt.Errorf("with halt-0 unready, scaling to 2 created halt-1 within %s (policy %s): %v", haltWindow, policy, podorder.NoneCreated(events[len(before):]))
	}
	if _, err := podExec(cfg)(ctx, ns, "halt-0", "/probe", "write", "/state/ready", "ready"); err != nil {
		return err
	}
	if _, err := rec.WaitFor(wait, "halt-1", podorder.Created); err != nil {
		return fmt.Errorf("halt-0 became Ready but halt-1 was never created: %w", err)
	}
	events, _ := rec.Events()
	return podorder.CreatedAfterReady(events, "halt-0", "halt-1")
}

// detectionGaps are, for each Ready step, how long after the Ready
// condition's transition time the watch delivered it. The API's time has
// second resolution, so each gap is an upper bound (up to a second over).
func detectionGaps(events []podorder.Event) []time.Duration {
	var out []time.Duration
	for _, e := range events {
		if e.What == podorder.Ready && !e.Stamp.IsZero() {
			out = append(out, e.At.Sub(e.Stamp))
		}
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func TestFixedDNS(t *testing.T) {
	f := behaviour("statefulset/fixed-dns", "fixed-dns", true)
	var probe string
	dnsFail := func(t *testing.T, cfg *envconf.Config, err error) {
		t.Helper()
		if err != nil {
			fatalf(t, "%s", labcheck.Explain(err.Error(), liveLab(context.Background(), t, cfg).DNSCause()))
		}
	}
	full := func(i int) string {
		return fmt.Sprintf("%s.%s.%s.svc.cluster.local", dbPod(i), suite.lab.Database, suite.lab.Namespace)
	}
	short := func(i int) string { return fmt.Sprintf("%s.%s", dbPod(i), suite.lab.Database) }
	f.Assess("mongo-<i>.mongo.<ns>.svc.cluster.local and mongo-<i>.mongo resolve, from a probe pod, to exactly that pod's IP", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		probe = runProbePod(ctx, t, cfg, "dns-probe")
		for i := 0; i < 2; i++ {
			ip := podIP(ctx, t, cfg, suite.lab.Namespace, dbPod(i))
			for _, name := range []string{full(i), short(i)} {
				dnsFail(t, cfg, resolvesTo(ctx, cfg, probe, name, ip))
			}
		}
		return ctx
	}).
		Assess(fmt.Sprintf("after mongo-0 is deleted, its name resolves to the new pod's IP within %s", dnsBound), func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if probe == "" {
				fatalf(t, "no probe pod")
			}
			old, repl, _, err := replacePod(ctx, clientset(t, cfg), dbPod(0), podReadyBound)
			check(t, err)
			readyAt := time.Now()
			var last error
			for i := 0; time.Since(readyAt) < dnsBound && i < 300; i++ {
				if last = resolvesTo(ctx, cfg, probe, full(0), repl.Status.PodIP); last == nil {
					f.figure(t, "mongo-0's name follows its new pod (after Ready)", time.Since(readyAt))
					return ctx
				}
				time.Sleep(100 * time.Millisecond)
			}
			dnsFail(t, cfg, fmt.Errorf("%s did not resolve to the new pod's %s (the old one had %s) within %s: %v", full(0), repl.Status.PodIP, old.Status.PodIP, dnsBound, last))
			return ctx
		}).
		Assess(fmt.Sprintf("the headless service name returns every ready pod's IP and no other (within %s)", dnsBound), func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if probe == "" {
				fatalf(t, "no probe pod")
			}
			sts := statefulSet(ctx, t, cfg)
			pods, err := podsOf(ctx, clientset(t, cfg), sts.Spec.Selector)
			check(t, err)
			var ips []string
			for i := range pods {
				if ok, _ := kube.PodReady(&pods[i]); ok {
					ips = append(ips, pods[i].Status.PodIP)
				}
			}
			name := fmt.Sprintf("%s.%s.svc.cluster.local", suite.lab.Database, suite.lab.Namespace)
			start := time.Now()
			var last error
			for i := 0; time.Since(start) < dnsBound && i < 300; i++ {
				if last = resolvesTo(ctx, cfg, probe, name, ips...); last == nil {
					return ctx
				}
				time.Sleep(100 * time.Millisecond)
			}
			dnsFail(t, cfg, last)
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			deleteProbePod(ctx, t, cfg, probe)
			restoreLab(ctx, t, cfg, suite.dbReplicas, suite.frontendReplicas)
			return ctx
		}).Test(t)
}

// resolvesTo fails unless name, looked up in the probe pod, gives exactly
// want.
func resolvesTo(ctx context.Context, cfg *envconf.Config, probe, name string, want ...string) error {
	out, err := podExec(cfg)(ctx, suite.lab.Namespace, probe, "/probe", "lookup", name)
	if err != nil {
		return fmt.Errorf("%s does not resolve: %v", name, err)
	}
	got := strings.Fields(out)
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		return fmt.Errorf("%s resolves to [%s], want [%s]", name, strings.Join(got, " "), strings.Join(want, " "))
	}
	return nil
}

func TestClaimsRetained(t *testing.T) {
	f := behaviour("statefulset/claims-retained", "claims-retained", true)
	marker := "marker-" + envconf.RandomName("", 8)
	var claim1 *corev1.PersistentVolumeClaim
	claimFail := func(t *testing.T, cfg *envconf.Config, failure string) {
		t.Helper()
		l := liveLab(context.Background(), t, cfg)
		fatalf(t, "%s", labcheck.Explain(failure, l.ClaimCause(), l.RetentionCause()))
	}
	claimName := func(t *testing.T, cfg *envconf.Config, i int) string {
		t.Helper()
		sts := statefulSet(context.Background(), t, cfg)
		if len(sts.Spec.VolumeClaimTemplates) == 0 {
			claimFail(t, cfg, fmt.Sprintf("%s has no claim of its own", dbPod(i)))
		}
		return fmt.Sprintf("%s-%s", sts.Spec.VolumeClaimTemplates[0].Name, dbPod(i))
	}
	getClaim := func(ctx context.Context, t *testing.T, cfg *envconf.Config, name string) *corev1.PersistentVolumeClaim {
		t.Helper()
		c, err := clientset(t, cfg).CoreV1().PersistentVolumeClaims(suite.lab.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			claimFail(t, cfg, fmt.Sprintf("claim %s: %v", name, err))
		}
		return c
	}
	f.Assess("deleting mongo-0 keeps its claim (same UID) and PV, and the new mongo-0 mounts that claim", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		cs := clientset(t, cfg)
		before := getClaim(ctx, t, cfg, claimName(t, cfg, 0))
		_, repl, _, err := replacePod(ctx, cs, dbPod(0), podReadyBound)
		check(t, err)
		after := getClaim(ctx, t, cfg, before.Name)
		if after.UID != before.UID || after.Spec.VolumeName != before.Spec.VolumeName {
			claimFail(t, cfg, fmt.Sprintf("claim %s was UID %s on PV %s, now UID %s on PV %s", before.Name, before.UID, before.Spec.VolumeName, after.UID, after.Spec.VolumeName))
		}
		if _, err := cs.CoreV1().PersistentVolumes().Get(ctx, before.Spec.VolumeName, metav1.GetOptions{}); err != nil {
			claimFail(t, cfg, fmt.Sprintf("PV %s of claim %s: %v", before.Spec.VolumeName, before.Name, err))
		}
		if !strings.Contains(","+claimOf(repl)+",", ","+before.Name+",") {
			claimFail(t, cfg, fmt.Sprintf("the new %s mounts %q, not claim %s", repl.Name, claimOf(repl), before.Name))
		}
		return ctx
	}).
		Assess("scaling to 1 keeps mongo-1's claim and PV", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			claim1 = getClaim(ctx, t, cfg, claimName(t, cfg, 1))
			db := dialDB(ctx, t, cfg, dbPod(1))
			check(t, db.Put(ctx, "conformance", "claims-retained", marker))
			db.Close()
			check(t, scaleStatefulSet(ctx, cs, 1, podGoneBound))
			after := getClaim(ctx, t, cfg, claim1.Name)
			if after.UID != claim1.UID {
				claimFail(t, cfg, fmt.Sprintf("after scaling to 1, claim %s is a new one (UID %s, was %s)", claim1.Name, after.UID, claim1.UID))
			}
			if after.DeletionTimestamp != nil {
				claimFail(t, cfg, fmt.Sprintf("after scaling to 1, claim %s is being deleted (since %s)", claim1.Name, after.DeletionTimestamp.Format(time.TimeOnly)))
			}
			if _, err := cs.CoreV1().PersistentVolumes().Get(ctx, claim1.Spec.VolumeName, metav1.GetOptions{}); err != nil {
				claimFail(t, cfg, fmt.Sprintf("after scaling to 1, PV %s of claim %s: %v", claim1.Spec.VolumeName, claim1.Name, err))
			}
			return ctx
		}).
		Assess("scaling back to 2 reattaches mongo-1's claim, with the marker written into mongo-1's database before", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if claim1 == nil {
				fatalf(t, "mongo-1's claim was not read before the scale-down")
			}
			cs := clientset(t, cfg)
			check(t, scaleStatefulSet(ctx, cs, 2, podReadyBound))
			p, err := cs.CoreV1().Pods(suite.lab.Namespace).Get(ctx, dbPod(1), metav1.GetOptions{})
			check(t, err)
			after := getClaim(ctx, t, cfg, claim1.Name)
			if after.UID != claim1.UID || !strings.Contains(","+claimOf(p)+",", ","+claim1.Name+",") {
				claimFail(t, cfg, fmt.Sprintf("mongo-1 mounts %q (claim UID %s), want claim %s UID %s", claimOf(p), after.UID, claim1.Name, claim1.UID))
			}
			got, err := dialDB(ctx, t, cfg, dbPod(1)).Get(ctx, "conformance", "claims-retained")
			if err != nil || got != marker {
				claimFail(t, cfg, fmt.Sprintf("mongo-1's database lost the marker written before the scale-down (read %q, error: %v)", got, err))
			}
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			restoreLab(ctx, t, cfg, suite.dbReplicas, suite.frontendReplicas)
			return ctx
		}).Test(t)
}
