package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/stateful-conformance/stateful-conformance/pkg/addons"
	"github.com/stateful-conformance/stateful-conformance/pkg/docker"
	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
	"github.com/stateful-conformance/stateful-conformance/pkg/manifest"
)

const labNamespace = "pacman"

// The lab runs: the database pods with their own claims, the game, and the
// game reached through the ingress and through a port-forward, its high
// scores surviving the database pod's deletion.
func TestLab(t *testing.T) {
	name := "ghost-" + envconf.RandomName("", 6)
	f := features.New("pacman lab").WithLabel("area", "lab").
		Assess("mongo-0 and mongo-1 are Ready, each with its own bound claim", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			volumes := map[string]bool{}
			for _, pod := range []string{"mongo-0", "mongo-1"} {
				p, err := cs.CoreV1().Pods(labNamespace).Get(ctx, pod, metav1.GetOptions{})
				check(t, err)
				if ok, why := kube.PodReady(p); !ok {
					t.Fatal(why)
				}
				pvc, err := cs.CoreV1().PersistentVolumeClaims(labNamespace).Get(ctx, "mongo-data-"+pod, metav1.GetOptions{})
				check(t, err)
				if pvc.Status.Phase != corev1.ClaimBound {
					t.Fatalf("claim %s is %s", pvc.Name, pvc.Status.Phase)
				}
				volumes[pvc.Spec.VolumeName] = true
			}
			if len(volumes) != 2 {
				t.Fatalf("mongo-0 and mongo-1 share a volume: %v", volumes)
			}
			return ctx
		}).
		Assess("the game is Ready", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			d, err := clientset(t, cfg).AppsV1().Deployments(labNamespace).Get(ctx, "pacman", metav1.GetOptions{})
			check(t, err)
			if ok, why := kube.DeploymentAvailable(d); !ok {
				t.Fatal(why)
			}
			return ctx
		}).
		Assess("the game's page loads through the ingress", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			code, body := ingressGet(ctx, t, "pacman.com", "/")
			if code != http.StatusOK || !strings.Contains(body, "High scores") {
				t.Fatalf("GET / through the ingress: %d %.200s", code, body)
			}
			return ctx
		}).
		Assess("a high score posted through the ingress is listed", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			form := url.Values{"name": {name}, "score": {"3333"}, "level": {"3"}, "cloud": {"kind"}, "zone": {"z"}, "host": {"h"}}
			code, body := ingressDo(ctx, t, http.MethodPost, "pacman.com", "/highscores", form.Encode())
			if code != http.StatusOK || !strings.Contains(body, `"rs":"success"`) {
				t.Fatalf("POST /highscores: %d %s", code, body)
			}
			if code, body := ingressGet(ctx, t, "pacman.com", "/highscores/list"); code != http.StatusOK || !strings.Contains(body, name) {
				t.Fatalf("GET /highscores/list: %d %s, want %s listed", code, body, name)
			}
			return ctx
		}).
		Assess("the high score is still there after mongo-0 is deleted and back", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			old, err := cs.CoreV1().Pods(labNamespace).Get(ctx, "mongo-0", metav1.GetOptions{})
			check(t, err)
			check(t, cs.CoreV1().Pods(labNamespace).Delete(ctx, "mongo-0", metav1.DeleteOptions{}))
			wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			check(t, kube.WaitForAll(wait, kube.ListWatch(cs.CoreV1().RESTClient(), "pods", labNamespace, "mongo-0"), &corev1.Pod{}, func(p *corev1.Pod) (bool, string) {
				if p.UID == old.UID {
					return false, "the old mongo-0 is still there"
				}
				return kube.PodReady(p)
			}))
			// The game reconnects by itself: bounded retries, a second apart.
			var code int
			var body string
			for i := 0; i < 30; i++ {
				if code, body = ingressGet(ctx, t, "pacman.com", "/highscores/list"); code == http.StatusOK && strings.Contains(body, name) {
					return ctx
				}
				time.Sleep(time.Second)
			}
			t.Fatalf("after mongo-0 came back: %d %s, want %s listed", code, body, name)
			return ctx
		}).
		Assess("an unknown host gets 404 from the ingress", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			if code, body := ingressGet(ctx, t, "nobody.example", "/"); code != http.StatusNotFound {
				t.Fatalf("GET / for an unknown host: %d %.200s, want 404", code, body)
			}
			return ctx
		}).
		Assess("kubectl port-forward svc/pacman 9090:80 works as in the lesson", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			port := forwardToService(ctx, t, cfg, labNamespace, "pacman")
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/highscores/list", port))
			check(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), name) {
				t.Fatalf("through the port-forward: %d %s", resp.StatusCode, body)
			}
			return ctx
		}).Feature()
	testenv.Test(t, f)
}

// ingressAddress is where the kind node's ingress port is on this machine.
func ingressAddress(ctx context.Context, t *testing.T) string {
	t.Helper()
	out, err := docker.Run(ctx, "port", kindNode(t), fmt.Sprintf("%d/tcp", addons.IngressNodePort))
	check(t, err)
	addr := strings.Fields(out)
	if len(addr) == 0 || !strings.HasPrefix(addr[0], "127.0.0.1:") {
		t.Fatalf("the ingress port is published at %q, want 127.0.0.1 (kind-config.yaml extraPortMappings)", out)
	}
	return addr[0]
}

func ingressGet(ctx context.Context, t *testing.T, host, path string) (int, string) {
	return ingressDo(ctx, t, http.MethodGet, host, path, "")
}

// ingressDo sends one request to the ingress controller for host, as curl
// -H 'Host: ...' http://127.0.0.1:PORT/... does.
func ingressDo(ctx context.Context, t *testing.T, method, host, path, form string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+ingressAddress(ctx, t)+path, strings.NewReader(form))
	check(t, err)
	req.Host = host
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	check(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

// forwardToService forwards a local port on 127.0.0.1 to the target port of
// service port 80 of one of the service's ready pods, as kubectl
// port-forward svc/NAME does, until the test ends; it returns the port.
func forwardToService(ctx context.Context, t *testing.T, cfg *envconf.Config, ns, name string) int {
	t.Helper()
	cs := clientset(t, cfg)
	svc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	check(t, err)
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector})})
	check(t, err)
	var pod *corev1.Pod
	for i := range pods.Items {
		if ok, _ := kube.PodReady(&pods.Items[i]); ok {
			pod = &pods.Items[i]
			break
		}
	}
	if pod == nil {
		t.Fatalf("service %s/%s has no ready pod", ns, name)
	}
	target := 0
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == svc.Spec.Ports[0].TargetPort.String() || int(p.ContainerPort) == svc.Spec.Ports[0].TargetPort.IntValue() {
				target = int(p.ContainerPort)
			}
		}
	}
	rc := cfg.Client().RESTConfig()
	transport, upgrader, err := spdy.RoundTripperFor(rc)
	check(t, err)
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod.Name).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", target)}, stop, ready, io.Discard, io.Discard)
	check(t, err)
	errs := make(chan error, 1)
	go func() { errs <- fw.ForwardPorts() }()
	t.Cleanup(func() { close(stop) })
	select {
	case <-ready:
	case err := <-errs:
		t.Fatalf("port-forward to %s: %v", pod.Name, err)
	case <-time.After(30 * time.Second):
		t.Fatal("port-forward not ready within 30 s")
	}
	ports, err := fw.GetPorts()
	check(t, err)
	return int(ports[0].Local)
}

// The lab on upstream images (manifests/lab-upstream) cannot run here, so
// the API server validates and admits it, as new objects, in a server-side
// dry run; a broken variant of it (tests/testdata/lab-upstream-broken) must
// be refused.
func TestUpstreamLabOverlay(t *testing.T) {
	f := features.New("pacman lab on upstream images").WithLabel("area", "lab").
		Assess("the upstream overlay passes a server-side dry run", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			objs, err := manifest.ReadDir(filepath.Join(repoRoot, "manifests/lab-upstream"))
			check(t, err)
			images := map[string]bool{}
			for _, o := range objs {
				for _, img := range manifest.Images(o) {
					images[img] = true
				}
			}
			for _, want := range []string{"quay.io/ifont/pacman-nodejs-app:latest", "mongo:5.0"} {
				if !images[want] {
					t.Fatalf("the overlay does not run %s: %v", want, images)
				}
			}
			check(t, dryRun(ctx, t, cfg, objs))
			return ctx
		}).
		Assess("a broken overlay is refused by the dry run", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			objs, err := manifest.ReadDir("testdata/lab-upstream-broken")
			check(t, err)
			err = dryRun(ctx, t, cfg, objs)
			if err == nil {
				t.Fatal("the dry run admitted a StatefulSet with an unknown podManagementPolicy")
			}
			t.Logf("refused: %v", err)
			return ctx
		}).Feature()
	testenv.Test(t, f)
}

// dryRun has the API server admit objs as if created anew, in a namespace
// of their own (the lab's namespace may exist already, and a dry-run of a
// Namespace does not create it for the objects that follow).
func dryRun(ctx context.Context, t *testing.T, cfg *envconf.Config, objs []*unstructured.Unstructured) error {
	t.Helper()
	ns := createNamespace(ctx, t, cfg, "dry-run")
	defer deleteNamespace(ctx, t, clientset(t, cfg), ns)
	var moved []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			continue
		}
		o = o.DeepCopy()
		if o.GetNamespace() == labNamespace {
			o.SetNamespace(ns)
		}
		moved = append(moved, o)
	}
	a, err := manifest.NewApplier(cfg.Client().RESTConfig())
	check(t, err)
	a.DryRun = true
	return a.Apply(ctx, moved)
}
