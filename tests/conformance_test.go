package tests

// What every behaviour feature shares: its labels and verdict, the lab's
// names and objects, scaling and replacing the lab's pods on watches, and
// reaching the game and the database through port-forwards.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
	"github.com/stateful-conformance/stateful-conformance/pkg/labcheck"
	"github.com/stateful-conformance/stateful-conformance/pkg/mongocheck"
	"github.com/stateful-conformance/stateful-conformance/pkg/portforward"
	"github.com/stateful-conformance/stateful-conformance/pkg/verdict"
)

// Bounds the behaviour features wait for; each is named in the assessment
// that waits.
const (
	// podReadyBound: a lab pod deleted or scaled up is Ready again.
	podReadyBound = 2 * time.Minute
	// podGoneBound: a lab pod scaled away is gone (the database's grace
	// period is part of it).
	podGoneBound = 2 * time.Minute
	// dnsBound: a replaced pod's name resolves to its new address.
	dnsBound = 30 * time.Second
	// gameBackBound: the game lists its scores again after the database's
	// pod came back.
	gameBackBound = 2 * time.Minute
)

// behaviourFeature is a feature that certifies one behaviour of the lesson;
// its assessments' outcomes go to the run's verdicts.
type behaviourFeature struct {
	name string
	b    *features.FeatureBuilder
}

// behaviour starts the feature name (e.g. "statefulset/fixed-dns") with
// labels suite=conformance, behaviour=<label> and disruptive=<bool>.
func behaviour(name, label string, disruptive bool) *behaviourFeature {
	labels := map[string]string{"suite": "conformance", "behaviour": label, "disruptive": strconv.FormatBool(disruptive)}
	b := features.New(name)
	for k, v := range labels {
		b = b.WithLabel(k, v)
	}
	results.Begin(name, labels)
	return &behaviourFeature{name: name, b: b}
}

// failures holds the message each failing or skipping assessment gave, by
// its *testing.T.
var failures sync.Map

// fatalf fails the assessment with a message that is also its verdict.
func fatalf(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	failures.Store(t, msg)
	t.Fatal(msg)
}

// skipf skips the assessment, saying why in its verdict.
func skipf(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	failures.Store(t, msg)
	t.Skip(msg)
}

// Assess adds an assessment whose outcome is recorded.
func (f *behaviourFeature) Assess(desc string, fn features.Func) *behaviourFeature {
	f.b = f.b.Assess(desc, func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		start := time.Now()
		returned := false
		defer func() {
			a := verdict.Assessment{Name: desc, Status: verdict.Passed, Seconds: time.Since(start).Seconds()}
			if msg, ok := failures.Load(t); ok {
				a.Message = msg.(string)
			}
			switch {
			case t.Skipped():
				a.Status = verdict.Skipped
			case t.Failed() || !returned:
				a.Status = verdict.Failed
				if a.Message == "" {
					a.Message = "failed (see the test log)"
				}
			}
			results.Assessed(f.name, a)
			if a.Status == verdict.Failed {
				t.Logf("VERDICT %s: %s: %s", f.name, desc, a.Message)
			}
		}()
		ctx = fn(ctx, t, cfg)
		returned = true
		return ctx
	})
	return f
}

// Teardown puts back what the feature changed; what it could not put back
// (reported with errorf) is a failed assessment of the feature's verdict,
// as the features after it may fail for it.
func (f *behaviourFeature) Teardown(fn features.Func) *behaviourFeature {
	f.b = f.b.Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		failures.Delete(t)
		ctx = fn(ctx, t, cfg)
		if msg, ok := failures.Load(t); ok {
			results.Assessed(f.name, verdict.Assessment{Name: "teardown: the lab is put back as its manifests have it", Status: verdict.Failed, Message: msg.(string)})
			t.Logf("VERDICT %s: teardown: %s", f.name, msg)
		}
		return ctx
	})
	return f
}

// errorf reports what a teardown could not put back, and goes on.
func errorf(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if old, ok := failures.Load(t); ok {
		msg = old.(string) + "; " + msg
	}
	failures.Store(t, msg)
	t.Error(fmt.Sprintf(format, args...))
}

// figure records a measured figure of the feature and prints it.
func (f *behaviourFeature) figure(t *testing.T, name string, value any) {
	t.Helper()
	results.Figure(f.name, name, value)
	t.Logf("figure %s: %s = %v", f.name, name, value)
}

// Test runs the feature.
func (f *behaviourFeature) Test(t *testing.T) { testenv.Test(t, f.b.Feature()) }

// liveLab reads the lab's objects as the cluster has them now.
func liveLab(ctx context.Context, t *testing.T, cfg *envconf.Config) *labcheck.Lab {
	t.Helper()
	l, err := labcheck.Load(ctx, clientset(t, cfg), suite.lab)
	check(t, err)
	return l
}

// statefulSet is the lab's database StatefulSet; without one, the
// assessment fails saying so.
func statefulSet(ctx context.Context, t *testing.T, cfg *envconf.Config) *appsv1.StatefulSet {
	t.Helper()
	l := liveLab(ctx, t, cfg)
	if l.StatefulSet == nil {
		fatalf(t, "the lab has no StatefulSet %s in namespace %s", suite.lab.Database, suite.lab.Namespace)
	}
	return l.StatefulSet
}

func dbPod(i int) string { return fmt.Sprintf("%s-%d", suite.lab.Database, i) }

// scaleStatefulSet sets the database's replicas through the scale
// subresource (as kubectl scale does) and waits, within bound, until it has
// exactly n pods, all Ready.
func scaleStatefulSet(ctx context.Context, cs kubernetes.Interface, n int32, bound time.Duration) error {
	if err := waitClaimsReusable(ctx, cs, n, bound); err != nil {
		return err
	}
	if err := requestScale(ctx, cs, n); err != nil {
		return err
	}
	return waitStatefulSetAt(ctx, cs, n, bound)
}

// waitClaimsReusable waits, within bound, until no claim of the database's
// ordinals below n is still owned by a pod that is gone. Under whenScaled:
// Delete a scaled-away pod's claim is handed to that pod and collected
// after it; while it exists the StatefulSet controller will not create the
// pod again, and as it does not watch claims, a scale-up asked for
// meanwhile stalls until some other change to the set (Kubernetes 1.34,
// PodClaimIsStale in pkg/controller/statefulset). A user scaling by hand
// would wait for the claims to go too.
func waitClaimsReusable(ctx context.Context, cs kubernetes.Interface, n int32, bound time.Duration) error {
	ns := suite.lab.Namespace
	sts, err := cs.AppsV1().StatefulSets(ns).Get(ctx, suite.lab.Database, metav1.GetOptions{})
	if err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for _, tpl := range sts.Spec.VolumeClaimTemplates {
		for i := 0; i < int(n); i++ {
			name := fmt.Sprintf("%s-%s", tpl.Name, dbPod(i))
			c, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			if !ownedByPod(c) {
				continue
			}
			if err := kube.WaitGone(wait, kube.ListWatch(cs.CoreV1().RESTClient(), "persistentvolumeclaims", ns, name), &corev1.PersistentVolumeClaim{}); err != nil {
				return fmt.Errorf("claim %s, handed to its scaled-away pod for deletion, still exists after %s: %w", name, bound, err)
			}
		}
	}
	return nil
}

func ownedByPod(c *corev1.PersistentVolumeClaim) bool {
	for _, ref := range c.OwnerReferences {
		if ref.Kind == "Pod" && ref.APIVersion == "v1" {
			return true
		}
	}
	return false
}

// requestScale only asks for n replicas of the database.
func requestScale(ctx context.Context, cs kubernetes.Interface, n int32) error {
	ns, name := suite.lab.Namespace, suite.lab.Database
	_, err := cs.AppsV1().StatefulSets(ns).UpdateScale(ctx, name, scaleTo(ns, name, n), metav1.UpdateOptions{})
	return err
}

// scaleTo is a scale with no resourceVersion: an unconditional update, as
// kubectl scale makes, so the controllers' own status writes between a
// read and the update cannot make it conflict.
func scaleTo(ns, name string, n int32) *autoscalingv1.Scale {
	return &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: n}}
}

// waitStatefulSetAt waits until the database StatefulSet has exactly n
// pods, all Ready.
func waitStatefulSetAt(ctx context.Context, cs kubernetes.Interface, n int32, bound time.Duration) error {
	wait, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	err := kube.WaitForAll(wait, kube.ListWatch(cs.AppsV1().RESTClient(), "statefulsets", suite.lab.Namespace, suite.lab.Database), &appsv1.StatefulSet{}, func(s *appsv1.StatefulSet) (bool, string) {
		st := s.Status
		ok := s.Spec.Replicas != nil && *s.Spec.Replicas == n && st.ObservedGeneration >= s.Generation && st.Replicas == n && st.ReadyReplicas == n
		return ok, fmt.Sprintf("statefulset %s: %d pods, %d Ready, want %d", s.Name, st.Replicas, st.ReadyReplicas, n)
	})
	if err != nil {
		return fmt.Errorf("within %s: %w", bound, err)
	}
	return nil
}

// replacePod deletes pod name of the lab and waits, within bound, until a
// pod of the same name with another UID is Ready; it returns the old and
// the new pod and how long that took.
func replacePod(ctx context.Context, cs kubernetes.Interface, name string, bound time.Duration) (old, repl *corev1.Pod, took time.Duration, err error) {
	ns := suite.lab.Namespace
	old, err = cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, 0, err
	}
	start := time.Now()
	if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return nil, nil, 0, err
	}
	wait, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	err = kube.WaitForAll(wait, kube.ListWatch(cs.CoreV1().RESTClient(), "pods", ns, name), &corev1.Pod{}, func(p *corev1.Pod) (bool, string) {
		if p.UID == old.UID {
			return false, fmt.Sprintf("the deleted %s is still there", name)
		}
		repl = p
		return kube.PodReady(p)
	})
	if err != nil {
		return old, nil, 0, fmt.Errorf("%s was not Ready again within %s: %w", name, bound, err)
	}
	return old, repl, time.Since(start), nil
}

// claimOf is the claim pod mounts from the StatefulSet's claim template
// (or, without templates, from its volumes), "" when it has none.
func claimOf(p *corev1.Pod) string {
	var claims []string
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			claims = append(claims, v.PersistentVolumeClaim.ClaimName)
		}
	}
	sort.Strings(claims)
	return strings.Join(claims, ",")
}

// dbCredentials are the lab's database user, as its front end logs in.
func dbCredentials(ctx context.Context, t *testing.T, cfg *envconf.Config) mongocheck.Credentials {
	t.Helper()
	l := liveLab(ctx, t, cfg)
	c := mongocheck.Credentials{Database: "pacman"}
	if l.Frontend == nil {
		return c
	}
	cs := clientset(t, cfg)
	for _, ctr := range l.Frontend.Spec.Template.Spec.Containers {
		for _, e := range ctr.Env {
			value := e.Value
			if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
				s, err := cs.CoreV1().Secrets(suite.lab.Namespace).Get(ctx, r.SecretKeyRef.Name, metav1.GetOptions{})
				check(t, err)
				value = string(s.Data[r.SecretKeyRef.Key])
			}
			switch e.Name {
			case "MONGO_AUTH_USER":
				c.User = value
			case "MONGO_AUTH_PWD":
				c.Password = value
			case "MONGO_AUTH_MECHANISM":
				c.Mechanism = value
			case "MONGO_DATABASE":
				c.Database = value
			}
		}
	}
	return c
}

// dialDB connects the MongoDB driver to the one database pod, through a
// port-forward to its port 27017, until the test ends.
func dialDB(ctx context.Context, t *testing.T, cfg *envconf.Config, pod string) *mongocheck.Server {
	t.Helper()
	fw, err := portforward.ToPod(ctx, cfg.Client().RESTConfig(), suite.lab.Namespace, pod, 27017)
	check(t, err)
	t.Cleanup(fw.Close)
	s, err := mongocheck.Dial(ctx, fw.Addr, dbCredentials(ctx, t, cfg))
	if err != nil {
		fatalf(t, "the database on %s: %v", pod, err)
	}
	t.Cleanup(s.Close)
	return s
}

// game is the front end reached as the lesson does, with kubectl
// port-forward svc/pacman.
type game struct {
	base   string
	client *http.Client
}

func openGame(ctx context.Context, t *testing.T, cfg *envconf.Config) *game {
	t.Helper()
	fw, err := portforward.ToService(ctx, cfg.Client().RESTConfig(), suite.lab.Namespace, suite.lab.Frontend)
	check(t, err)
	t.Cleanup(fw.Close)
	return &game{base: "http://" + fw.Addr, client: &http.Client{Timeout: 10 * time.Second}}
}

// postScore posts a high score as the game's page does; it fails unless
// the game acknowledges it.
func (g *game) postScore(ctx context.Context, name string, score int) error {
	form := url.Values{"name": {name}, "score": {strconv.Itoa(score)}, "level": {"1"}, "cloud": {"kind"}, "zone": {"z"}, "host": {"h"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.base+"/highscores", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	code, body, err := g.do(req)
	if err != nil {
		return err
	}
	if code != http.StatusOK || !strings.Contains(body, `"rs":"success"`) {
		return fmt.Errorf("POST /highscores %s: %d %.200s", name, code, body)
	}
	return nil
}

// listed returns which of names GET /highscores/list lists.
func (g *game) listed(ctx context.Context, names []string) (map[string]bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base+"/highscores/list", nil)
	if err != nil {
		return nil, err
	}
	code, body, err := g.do(req)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /highscores/list: %d %.200s", code, body)
	}
	found := map[string]bool{}
	for _, n := range names {
		if strings.Contains(body, `"`+n+`"`) {
			found[n] = true
		}
	}
	return found, nil
}

func (g *game) do(req *http.Request) (int, string, error) {
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// untilListed asks the game for its list every interval until it lists
// every one of names or bound passes; it returns how long the game could
// not list them (from the first incomplete answer to the first complete
// one) and what it listed last.
func (g *game) untilListed(ctx context.Context, names []string, bound time.Duration) (gap time.Duration, found map[string]bool, last error) {
	const interval = 100 * time.Millisecond
	deadline := time.Now().Add(bound)
	var firstMiss time.Time
	for i := 0; time.Now().Before(deadline) && i < int(bound/interval)+1; i++ {
		f, err := g.listed(ctx, names)
		if err == nil && len(f) == len(names) {
			if firstMiss.IsZero() {
				return 0, f, nil
			}
			return time.Since(firstMiss), f, nil
		}
		if firstMiss.IsZero() {
			firstMiss = time.Now()
		}
		found, last = f, err
		select {
		case <-ctx.Done():
			return time.Since(firstMiss), found, ctx.Err()
		case <-time.After(interval):
		}
	}
	return time.Since(firstMiss), found, last
}

// runProbePod starts a probe pod in the lab's namespace (DNS short names
// resolve as the lab's pods resolve them); the feature's teardown deletes it
// with deleteProbePod.
func runProbePod(ctx context.Context, t *testing.T, cfg *envconf.Config, prefix string) string {
	t.Helper()
	cs := clientset(t, cfg)
	name := envconf.RandomName(prefix, len(prefix)+6)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": "stateful-conformance"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{Name: "probe", Image: suite.probe, Args: []string{"sleep"}, ImagePullPolicy: corev1.PullIfNotPresent,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), RunAsNonRoot: ptr.To(true)}}},
		},
	}
	_, err := cs.CoreV1().Pods(suite.lab.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	check(t, err)
	wait, cancel := context.WithTimeout(ctx, podReadyBound)
	defer cancel()
	if err := kube.WaitForPodReady(wait, cs, suite.lab.Namespace, name); err != nil {
		deleteProbePod(context.Background(), t, cfg, name)
		fatalf(t, "probe pod %s not Ready within %s: %v", name, podReadyBound, err)
	}
	return name
}

// deleteProbePod deletes a pod runProbePod made, if any.
func deleteProbePod(ctx context.Context, t *testing.T, cfg *envconf.Config, name string) {
	if name == "" {
		return
	}
	if err := clientset(t, cfg).CoreV1().Pods(suite.lab.Namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Logf("deleting probe pod %s: %v", name, err)
	}
}

// podsOf lists the pods a selector of the lab selects.
func podsOf(ctx context.Context, cs kubernetes.Interface, selector *metav1.LabelSelector) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, err
	}
	list, err := cs.CoreV1().Pods(suite.lab.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

// restoreLab scales the database back to n and the front end back to m,
// waiting until both run; teardowns call it so the next feature starts from
// the lab as deployed.
func restoreLab(ctx context.Context, t *testing.T, cfg *envconf.Config, n, m int32) {
	t.Helper()
	cs := clientset(t, cfg)
	if err := scaleStatefulSet(ctx, cs, n, podReadyBound); err != nil {
		errorf(t, "putting the lab back: StatefulSet %s at %d: %v", suite.lab.Database, n, err)
	}
	if err := scaleDeployment(ctx, cs, m, podReadyBound); err != nil {
		errorf(t, "putting the lab back: Deployment %s at %d: %v", suite.lab.Frontend, m, err)
	}
}

// scaleDeployment sets the front end's replicas through the scale
// subresource and waits until they are all available.
func scaleDeployment(ctx context.Context, cs kubernetes.Interface, n int32, bound time.Duration) error {
	ns, name := suite.lab.Namespace, suite.lab.Frontend
	if _, err := cs.AppsV1().Deployments(ns).UpdateScale(ctx, name, scaleTo(ns, name, n), metav1.UpdateOptions{}); err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	if err := kube.WaitForDeployment(wait, cs, ns, name); err != nil {
		return fmt.Errorf("within %s: %w", bound, err)
	}
	return nil
}

// deleteExtraClaims deletes the database's claims for ordinals the lab's
// manifests do not ask for (a feature scaled past them), and waits, within
// a minute, until they are gone.
func deleteExtraClaims(ctx context.Context, t *testing.T, cfg *envconf.Config) {
	t.Helper()
	cs := clientset(t, cfg)
	sts, err := cs.AppsV1().StatefulSets(suite.lab.Namespace).Get(ctx, suite.lab.Database, metav1.GetOptions{})
	if err != nil {
		errorf(t, "putting the lab back: %v", err)
		return
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, tpl := range sts.Spec.VolumeClaimTemplates {
		for i := int(suite.dbReplicas); i < int(suite.dbReplicas)+8; i++ {
			name := fmt.Sprintf("%s-%s", tpl.Name, dbPod(i))
			err := cs.CoreV1().PersistentVolumeClaims(suite.lab.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err == nil {
				err = kube.WaitGone(wait, kube.ListWatch(cs.CoreV1().RESTClient(), "persistentvolumeclaims", suite.lab.Namespace, name), &corev1.PersistentVolumeClaim{})
			}
			if err != nil {
				errorf(t, "putting the lab back: claim %s (within 1m): %v", name, err)
			}
		}
	}
}
