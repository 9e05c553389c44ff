package tests

// The front end scales the way the lesson scales it: kubectl scale
// deployment pacman --replicas=10, through the scale subresource, to ten
// interchangeable pods behind one Service, each serving the same scores.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
	"github.com/stateful-conformance/stateful-conformance/pkg/labcheck"
)

const (
	frontendScale = 10
	// scaleHold is how long the scale must hold: longer than the
	// HorizontalPodAutoscaler controller's default 15 s sync period, so an
	// autoscaler that fights the scale is seen.
	scaleHold = 20 * time.Second
	// serviceRequests bounds the requests sent through the Service.
	serviceRequests = 40
)

func TestScaleToTen(t *testing.T) {
	f := behaviour("frontend/scale-to-10", "scale-to-10", true)
	// requestedAt is when the scale was asked for: the hold counts from it.
	var requestedAt time.Time
	var probe string
	scaleFail := func(ctx context.Context, t *testing.T, cfg *envconf.Config, failure string) {
		t.Helper()
		fatalf(t, "%s", labcheck.Explain(failure, liveLab(ctx, t, cfg).ScaleCause(frontendScale)))
	}
	f.Assess(fmt.Sprintf("scaled to %d through the scale subresource, the Deployment has %d Ready pods with distinct generated names (within %s)", frontendScale, frontendScale, podReadyBound), func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		cs := clientset(t, cfg)
		ns, name := suite.lab.Namespace, suite.lab.Frontend
		start := time.Now()
		_, err := cs.AppsV1().Deployments(ns).UpdateScale(ctx, name, scaleTo(ns, name, frontendScale), metav1.UpdateOptions{})
		check(t, err)
		requestedAt = time.Now()
		wait, cancel := context.WithTimeout(ctx, podReadyBound)
		defer cancel()
		var last string
		_, err = watchtools.UntilWithSync(wait, kube.ListWatch(cs.AppsV1().RESTClient(), "deployments", ns, name), &appsv1.Deployment{}, nil, func(ev watch.Event) (bool, error) {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok {
				return false, nil
			}
			if r := ptr.Deref(d.Spec.Replicas, 1); r != frontendScale {
				return false, fmt.Errorf("Deployment %s was set back to %d replicas by %s", name, r, replicasManager(d))
			}
			ok, last = kube.DeploymentAvailable(d)
			return ok, nil
		})
		if err != nil {
			scaleFail(ctx, t, cfg, fmt.Sprintf("scaling to %d: %v (%s)", frontendScale, err, last))
		}
		f.figure(t, "scale to 10 Ready", time.Since(start))
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		check(t, err)
		pods, err := podsOf(ctx, cs, d.Spec.Selector)
		check(t, err)
		seen := map[string]bool{}
		for i := range pods {
			p := &pods[i]
			if p.DeletionTimestamp != nil {
				continue
			}
			if ok, why := kube.PodReady(p); !ok {
				fatalf(t, "%s", why)
			}
			if p.GenerateName == "" || !strings.HasPrefix(p.Name, p.GenerateName) {
				fatalf(t, "pod %s has no generated name", p.Name)
			}
			seen[p.Name] = true
		}
		if len(seen) != frontendScale {
			scaleFail(ctx, t, cfg, fmt.Sprintf("Deployment %s has %d Ready pods, want %d", name, len(seen), frontendScale))
		}
		return ctx
	}).
		Assess(fmt.Sprintf("Service pacman's EndpointSlices list %d ready endpoints (within 30s)", frontendScale), func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			wait, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			lw := cache.NewFilteredListWatchFromClient(cs.DiscoveryV1().RESTClient(), "endpointslices", suite.lab.Namespace, func(o *metav1.ListOptions) {
				o.LabelSelector = discoveryv1.LabelServiceName + "=" + suite.lab.Frontend
			})
			var store cache.Store
			ready := func() int {
				n := 0
				for _, o := range store.List() {
					for _, e := range o.(*discoveryv1.EndpointSlice).Endpoints {
						if ptr.Deref(e.Conditions.Ready, false) {
							n++
						}
					}
				}
				return n
			}
			_, err := watchtools.UntilWithSync(wait, lw, &discoveryv1.EndpointSlice{}, func(s cache.Store) (bool, error) {
				store = s
				return ready() == frontendScale, nil
			}, func(watch.Event) (bool, error) { return ready() == frontendScale, nil })
			if err != nil {
				got := 0
				if store != nil {
					got = ready()
				}
				scaleFail(ctx, t, cfg, fmt.Sprintf("Service %s has %d ready endpoints, want %d: %v", suite.lab.Frontend, got, frontendScale, err))
			}
			return ctx
		}).
		Assess(fmt.Sprintf("%d requests through the Service reach several distinct pods", serviceRequests), func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			probe = runProbePod(ctx, t, cfg, "scale-probe")
			out, err := podExec(cfg)(ctx, suite.lab.Namespace, probe, "/probe", "fetch", fmt.Sprint(serviceRequests),
				fmt.Sprintf("http://%s.%s.svc/location/metadata", suite.lab.Frontend, suite.lab.Namespace))
			check(t, err)
			hosts := map[string]int{}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				code, body, _ := strings.Cut(line, " ")
				var meta struct {
					Host string `json:"host"`
				}
				if code != "200" || json.Unmarshal([]byte(body), &meta) != nil || meta.Host == "" {
					fatalf(t, "GET /location/metadata through the Service: %.200s", line)
				}
				hosts[meta.Host]++
			}
			f.figure(t, "distinct pods answering the Service", fmt.Sprintf("%d of %d requests spread over %d pods", serviceRequests, serviceRequests, len(hosts)))
			if len(hosts) < 3 {
				fatalf(t, "%d requests through Service %s reached only %v", serviceRequests, suite.lab.Frontend, hosts)
			}
			return ctx
		}).
		Assess("every pod serves the same high-score list", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if probe == "" {
				fatalf(t, "no probe pod")
			}
			cs := clientset(t, cfg)
			d, err := cs.AppsV1().Deployments(suite.lab.Namespace).Get(ctx, suite.lab.Frontend, metav1.GetOptions{})
			check(t, err)
			pods, err := podsOf(ctx, cs, d.Spec.Selector)
			check(t, err)
			var urls, names []string
			for _, p := range pods {
				if p.DeletionTimestamp == nil && p.Status.PodIP != "" {
					urls = append(urls, fmt.Sprintf("http://%s:8080/highscores/list", p.Status.PodIP))
					names = append(names, p.Name)
				}
			}
			out, err := podExec(cfg)(ctx, suite.lab.Namespace, probe, append([]string{"/probe", "fetch", "1"}, urls...)...)
			check(t, err)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != len(urls) {
				fatalf(t, "asked %d pods, got %d answers", len(urls), len(lines))
			}
			for i, line := range lines {
				if !strings.HasPrefix(line, "200 ") {
					fatalf(t, "pod %s: GET /highscores/list: %.200s", names[i], line)
				}
				if line != lines[0] {
					fatalf(t, "pod %s lists %.200s, pod %s lists %.200s", names[i], line, names[0], lines[0])
				}
			}
			return ctx
		}).
		Assess(fmt.Sprintf("the scale holds for %s from the request (longer than an autoscaler's 15 s sync)", scaleHold), func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if requestedAt.IsZero() {
				fatalf(t, "the scale to %d was never asked for", frontendScale)
			}
			cs := clientset(t, cfg)
			hold, cancel := context.WithDeadline(ctx, requestedAt.Add(scaleHold))
			defer cancel()
			_, err := watchtools.UntilWithSync(hold, kube.ListWatch(cs.AppsV1().RESTClient(), "deployments", suite.lab.Namespace, suite.lab.Frontend), &appsv1.Deployment{}, nil, func(ev watch.Event) (bool, error) {
				if d, ok := ev.Object.(*appsv1.Deployment); ok && ptr.Deref(d.Spec.Replicas, 1) != frontendScale {
					return false, fmt.Errorf("Deployment %s was set back to %d replicas by %s", d.Name, ptr.Deref(d.Spec.Replicas, 1), replicasManager(d))
				}
				return false, nil
			})
			// Only the end of the hold is a success; any other error (a
			// replica change, a closed watch) fails.
			if err != nil && !(hold.Err() != nil && (wait.Interrupted(err) || errors.Is(err, context.DeadlineExceeded))) {
				scaleFail(ctx, t, cfg, err.Error())
			}
			// The hold may have ended before this assessment began (the ones
			// before took longer): the Deployment is then read once more.
			d, err := cs.AppsV1().Deployments(suite.lab.Namespace).Get(ctx, suite.lab.Frontend, metav1.GetOptions{})
			check(t, err)
			if r := ptr.Deref(d.Spec.Replicas, 1); r != frontendScale {
				scaleFail(ctx, t, cfg, fmt.Sprintf("%s after the scale to %d, Deployment %s was set back to %d replicas by %s", time.Since(requestedAt).Round(time.Second), frontendScale, d.Name, r, replicasManager(d)))
			}
			f.figure(t, "scale held for (from the request)", time.Since(requestedAt).Round(time.Second))
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			deleteProbePod(ctx, t, cfg, probe)
			restoreLab(ctx, t, cfg, suite.dbReplicas, suite.frontendReplicas)
			return ctx
		}).Test(t)
}

// replicasManager names the field manager that last set spec.replicas.
func replicasManager(d *appsv1.Deployment) string {
	var who []string
	for _, m := range d.ManagedFields {
		if m.FieldsV1 != nil && strings.Contains(string(m.FieldsV1.Raw), `"f:replicas"`) && m.Subresource != "status" {
			who = append(who, m.Manager)
		}
	}
	if len(who) == 0 {
		return "an unknown manager"
	}
	return strings.Join(who, ", ")
}
