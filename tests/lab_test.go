package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/stateful-conformance/stateful-conformance/pkg/addons"
	"github.com/stateful-conformance/stateful-conformance/pkg/docker"
	"github.com/stateful-conformance/stateful-conformance/pkg/manifest"
)

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
		if o.GetNamespace() == suite.lab.Namespace {
			o.SetNamespace(ns)
		}
		moved = append(moved, o)
	}
	a, err := manifest.NewApplier(cfg.Client().RESTConfig())
	check(t, err)
	a.DryRun = true
	return a.Apply(ctx, moved)
}
