package tests

// Ingress as the lesson routes it: host pacman.com, path / (Prefix), to
// Service pacman port 80, served by the cluster's default IngressClass, and
// following the game's pods as they scale and are replaced.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
	"github.com/stateful-conformance/stateful-conformance/pkg/labcheck"
)

const (
	// routingInterval and routingBound pace and bound the request loop that
	// watches routing while the game's pods change.
	routingInterval = 50 * time.Millisecond
	routingBound    = 3 * time.Minute
	// max5xx bounds the time the ingress may answer 5xx while pods change.
	max5xx = 3 * time.Second
)

const ingressClassDefault = "ingressclass.kubernetes.io/is-default-class"

func TestHostRouting(t *testing.T) {
	f := behaviour("ingress/host-routing", "host-routing", true)
	host := suite.lab.Host
	routeFail := func(ctx context.Context, t *testing.T, cfg *envconf.Config, failure string) {
		t.Helper()
		fatalf(t, "%s", labcheck.Explain(failure, liveLab(ctx, t, cfg).IngressCause()))
	}
	f.Assess("pacman-ingress is served by the cluster's one default IngressClass", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		cs := clientset(t, cfg)
		classes, err := cs.NetworkingV1().IngressClasses().List(ctx, metav1.ListOptions{})
		check(t, err)
		var defaults []string
		for _, c := range classes.Items {
			if c.Annotations[ingressClassDefault] == "true" {
				defaults = append(defaults, c.Name+" ("+c.Spec.Controller+")")
			}
		}
		if len(defaults) != 1 {
			fatalf(t, "the cluster has %d default IngressClasses %v, want exactly one", len(defaults), defaults)
		}
		l := liveLab(ctx, t, cfg)
		if l.Ingress == nil {
			routeFail(ctx, t, cfg, "no Ingress to route")
		}
		if c := ptr.Deref(l.Ingress.Spec.IngressClassName, ""); c != "" && !strings.HasPrefix(defaults[0], c+" ") {
			fatalf(t, "Ingress %s names class %s, not the default %s", l.Ingress.Name, c, defaults[0])
		}
		f.figure(t, "IngressClass", defaults[0])
		return ctx
	}).
		Assess("Host: pacman.com serves the page and the API (POST and list)", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			start := time.Now()
			code, body := ingressGet(ctx, t, host, "/")
			f.figure(t, "ingress first byte of the page", time.Since(start))
			if code != http.StatusOK || !strings.Contains(strings.ToLower(body), "<html") {
				routeFail(ctx, t, cfg, fmt.Sprintf("GET / for host %s through the ingress: %d %.120s", host, code, body))
			}
			// The list is the top 10: the new score must beat every score
			// already there (earlier features post their own).
			code, body = ingressGet(ctx, t, host, "/highscores/list")
			var listed []struct {
				Score int64 `json:"score"`
			}
			if code != http.StatusOK || json.Unmarshal([]byte(body), &listed) != nil {
				routeFail(ctx, t, cfg, fmt.Sprintf("GET /highscores/list for host %s: %d %.200s, want a JSON list", host, code, body))
			}
			score := int64(3333)
			for _, l := range listed {
				score = max(score, l.Score+1)
			}
			name := "ingress-" + envconf.RandomName("", 6)
			form := url.Values{"name": {name}, "score": {strconv.FormatInt(score, 10)}, "level": {"3"}, "cloud": {"kind"}, "zone": {"z"}, "host": {"h"}}
			code, body = ingressDo(ctx, t, http.MethodPost, host, "/highscores", form.Encode())
			if code != http.StatusOK || !strings.Contains(body, `"rs":"success"`) {
				routeFail(ctx, t, cfg, fmt.Sprintf("POST /highscores for host %s: %d %.200s", host, code, body))
			}
			if code, body := ingressGet(ctx, t, host, "/highscores/list"); code != http.StatusOK || !strings.Contains(body, name) {
				routeFail(ctx, t, cfg, fmt.Sprintf("GET /highscores/list for host %s: %d %.200s, want %s listed", host, code, body, name))
			}
			return ctx
		}).
		Assess("another host gets 404", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if code, body := ingressGet(ctx, t, "nobody.example", "/"); code != http.StatusNotFound {
				fatalf(t, "GET / for host nobody.example: %d %.200s, want 404", code, body)
			}
			return ctx
		}).
		Assess(fmt.Sprintf("routing follows the game's pods through scaling to 3, a pod's deletion and scaling back, with 5xx for at most %s", max5xx), func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			addr := ingressAddress(ctx, t)
			loop, stop := context.WithTimeout(ctx, routingBound)
			defer stop()
			var mu sync.Mutex
			var ok, bad5xx, other int
			var firstBad string
			hosts := map[string]bool{}
			done := make(chan struct{})
			go func() {
				defer close(done)
				client := &http.Client{Timeout: 5 * time.Second}
				for i := 0; loop.Err() == nil && i < int(routingBound/routingInterval); i++ {
					req, _ := http.NewRequestWithContext(loop, http.MethodGet, "http://"+addr+"/location/metadata", nil)
					req.Host = host
					resp, err := client.Do(req)
					mu.Lock()
					switch {
					case err != nil:
						if loop.Err() == nil {
							other++
							if firstBad == "" {
								firstBad = err.Error()
							}
						}
					case resp.StatusCode >= 500:
						bad5xx++
						if firstBad == "" {
							firstBad = resp.Status
						}
					case resp.StatusCode == http.StatusOK:
						ok++
						var buf [512]byte
						n, _ := resp.Body.Read(buf[:])
						if _, after, found := strings.Cut(string(buf[:n]), `"host":"`); found {
							h, _, _ := strings.Cut(after, `"`)
							hosts[h] = true
						}
					default:
						other++
						if firstBad == "" {
							firstBad = resp.Status
						}
					}
					mu.Unlock()
					if resp != nil {
						resp.Body.Close()
					}
					time.Sleep(routingInterval)
				}
			}()
			steps := func() error {
				if err := scaleDeployment(ctx, cs, 3, podReadyBound); err != nil {
					return err
				}
				d, err := cs.AppsV1().Deployments(suite.lab.Namespace).Get(ctx, suite.lab.Frontend, metav1.GetOptions{})
				if err != nil {
					return err
				}
				pods, err := podsOf(ctx, cs, d.Spec.Selector)
				if err != nil || len(pods) == 0 {
					return fmt.Errorf("no pods of %s: %v", suite.lab.Frontend, err)
				}
				if err := cs.CoreV1().Pods(suite.lab.Namespace).Delete(ctx, pods[0].Name, metav1.DeleteOptions{}); err != nil {
					return err
				}
				wait, cancel := context.WithTimeout(ctx, podReadyBound)
				defer cancel()
				if err := kube.WaitForDeployment(wait, cs, suite.lab.Namespace, suite.lab.Frontend); err != nil {
					return err
				}
				return scaleDeployment(ctx, cs, suite.frontendReplicas, podReadyBound)
			}
			err := steps()
			// A last second of requests after the scale-down.
			time.Sleep(time.Second)
			stop()
			<-done
			check(t, err)
			mu.Lock()
			defer mu.Unlock()
			f.figure(t, "requests through the ingress while pods changed", fmt.Sprintf("%d ok, %d 5xx, %d other, %d pods answered", ok, bad5xx, other, len(hosts)))
			if time.Duration(bad5xx)*routingInterval > max5xx || other > 0 {
				routeFail(ctx, t, cfg, fmt.Sprintf("while the game's pods changed, %d requests got 5xx (about %s) and %d failed otherwise (first: %s)", bad5xx, time.Duration(bad5xx)*routingInterval, other, firstBad))
			}
			if ok == 0 || len(hosts) < 2 {
				routeFail(ctx, t, cfg, fmt.Sprintf("while the game scaled to 3, requests through the ingress reached %d pod(s) (%d answered)", len(hosts), ok))
			}
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			restoreLab(ctx, t, cfg, suite.dbReplicas, suite.frontendReplicas)
			return ctx
		}).Test(t)
}
