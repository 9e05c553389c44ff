package nodeimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stateful-conformance/stateful-conformance/pkg/docker"
	"github.com/stateful-conformance/stateful-conformance/pkg/ociimage"
)

// Registry is where kubeadm looks for the control-plane images. The node's
// containerd has them under these names, so nothing is ever pulled.
const Registry = "registry.k8s.io"

// componentsArchive writes the control-plane images (kube-apiserver,
// kube-controller-manager, kube-scheduler, kube-proxy, etcd, CoreDNS and
// pause) under the names kubeadm asks for, as one docker-archive tarball.
func (p *plan) componentsArchive(ctx context.Context, bins map[string]string, pause, rootfs string) (string, error) {
	dir, err := p.o.Cache.Ensure("components", p.componentsKey, func(out string) error {
		start := time.Now()
		fmt.Fprintln(p.o.Log, "• writing the control-plane images")
		images := map[string]v1.Image{}
		path := "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		// Static pods run the bare binary name, found through PATH.
		for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			img, err := binaryImage(filepath.Join(bins["kubernetes"], name), "/usr/local/bin/"+name, v1.Config{Env: []string{path}})
			if err != nil {
				return err
			}
			images[Registry+"/"+name+":"+p.versions.Kubernetes] = img
		}
		etcd, err := onlyFile(bins["etcd"])
		if err != nil {
			return err
		}
		img, err := binaryImage(etcd, "/usr/local/bin/etcd", v1.Config{Env: []string{path}})
		if err != nil {
			return err
		}
		images[Registry+"/etcd:"+strings.TrimPrefix(p.versions.Etcd, "v")+"-0"] = img
		// kubeadm starts CoreDNS with only "-conf /etc/coredns/Corefile".
		img, err = binaryImage(filepath.Join(bins["coredns"], "coredns"), "/coredns", v1.Config{Entrypoint: []string{"/coredns"}})
		if err != nil {
			return err
		}
		images[Registry+"/coredns/coredns:"+p.versions.CoreDNS] = img
		img, err = binaryImage(filepath.Join(pause, "pause"), "/pause", v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"})
		if err != nil {
			return err
		}
		for _, tag := range PauseTags {
			images[Registry+"/pause:"+tag] = img
		}
		if img, err = p.kubeProxyImage(ctx, bins, rootfs, out); err != nil {
			return err
		}
		images[Registry+"/kube-proxy:"+p.versions.Kubernetes] = img
		if err := ociimage.WriteArchive(filepath.Join(out, "components.tar"), images); err != nil {
			return err
		}
		os.Remove(filepath.Join(out, "kube-proxy-userland.tar"))
		fmt.Fprintf(p.o.Log, "  %d images in %s\n", len(images), time.Since(start).Round(time.Second))
		return nil
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "components.tar"), nil
}

// binaryImage is an image of one static binary.
func binaryImage(src, dst string, config v1.Config) (v1.Image, error) {
	layer, err := ociimage.Layer([]ociimage.File{{Source: src, Path: dst, Mode: 0o755}})
	if err != nil {
		return nil, err
	}
	return ociimage.Image(config, layer)
}

// kubeProxyImage is kube-proxy with the iptables userland it drives: the
// files of Debian's iptables and conntrack packages and their libraries,
// collected from the node's root filesystem by images/kube-proxy/collect.sh,
// and a wrapper that picks the node's iptables backend.
func (p *plan) kubeProxyImage(ctx context.Context, bins map[string]string, rootfs, workDir string) (v1.Image, error) {
	dir := filepath.Join(p.o.RepoRoot, "images/kube-proxy")
	script, err := os.Open(filepath.Join(dir, "collect.sh"))
	if err != nil {
		return nil, err
	}
	defer script.Close()
	userland := filepath.Join(workDir, "kube-proxy-userland.tar")
	f, err := os.Create(userland)
	if err != nil {
		return nil, err
	}
	_, err = docker.RunIO(ctx, script, f, "run", "--rm", "-i", "--network", "none", rootfs, "sh", "-s")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("collecting kube-proxy's iptables userland: %w", err)
	}
	base, err := ociimage.LayerFromTar(userland)
	if err != nil {
		return nil, err
	}
	files := []ociimage.File{
		{Source: filepath.Join(bins["kubernetes"], "kube-proxy"), Path: "/usr/local/bin/kube-proxy", Mode: 0o755},
	}
	// Each iptables name starts as the wrapper, which re-links them to the
	// chosen backend on first use.
	for _, name := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		files = append(files, ociimage.File{Source: filepath.Join(dir, "iptables-wrapper"), Path: "/usr/sbin/" + name, Mode: 0o755})
	}
	// The wrapper's shell and tools are busybox applets.
	for _, applet := range []string{"sh", "grep", "ln"} {
		files = append(files, ociimage.File{Link: "/usr/bin/busybox", Path: "/usr/bin/" + applet})
	}
	top, err := ociimage.Layer(files)
	if err != nil {
		return nil, err
	}
	return ociimage.Image(v1.Config{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}, base, top)
}

// onlyFile is the single file in dir (go build names a binary after its
// package path, which for etcd's server module is "server").
func onlyFile(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	if len(entries) != 1 {
		return "", fmt.Errorf("%s: want one binary, found %d files", dir, len(entries))
	}
	return filepath.Join(dir, entries[0].Name()), nil
}
