package addons

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
	"github.com/stateful-conformance/stateful-conformance/pkg/localimage"
	"github.com/stateful-conformance/stateful-conformance/pkg/manifest"
)

const (
	// IngressNamespace is where the ingress controller runs.
	IngressNamespace = "traefik"
	// IngressNodePort is the node port the controller listens on; kind maps
	// it to 127.0.0.1 on the machine (kind-config.yaml).
	IngressNodePort = 30080
	traefikImage    = "traefik:v3.5.3"
)

var traefik = localimage.Program{
	Name: "traefik", Module: "images/traefik", Package: "github.com/traefik/traefik/v3/cmd/traefik",
	Version: "v3.5.3", VersionVar: "github.com/traefik/traefik/v3/pkg/version.Version",
}

// InstallIngress installs Traefik as the cluster's default ingress
// controller (manifests/ingress) and waits until it answers its ping.
func InstallIngress(ctx context.Context, o Options) error {
	start := time.Now()
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	fmt.Fprintln(o.Log, "• installing the ingress controller (Traefik v3.5.3)")
	objs, err := manifest.ReadDir(filepath.Join(o.RepoRoot, "manifests/ingress"))
	if err != nil {
		return err
	}
	images := map[string]string{}
	if o.Source {
		if o.KindCluster == "" {
			return fmt.Errorf("Traefik built from source can only be loaded into a kind cluster")
		}
		if images, err = localimage.BuildAll(ctx, o.RepoRoot, o.Cache, o.KindCluster, map[string]localimage.Program{traefikImage: traefik}, o.Log); err != nil {
			return err
		}
	}
	if err := manifest.ApplyTo(ctx, o.Config, objs, images); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := kube.WaitForWorkloads(wait, cs, objs); err != nil {
		return fmt.Errorf("ingress controller: %w", err)
	}
	fmt.Fprintf(o.Log, "• ingress controller ready in %s (default IngressClass traefik, node port %d)\n", time.Since(start).Round(100*time.Millisecond), IngressNodePort)
	return nil
}
