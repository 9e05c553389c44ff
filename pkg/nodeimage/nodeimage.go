// Package nodeimage builds the kind node image from source, with no
// registry: Kubernetes, etcd, CoreDNS, the CNI plugins and pause compiled
// here, a debootstrapped Debian root filesystem, kind's base-image files read
// from the module cache, and the control-plane images preloaded into the
// node's containerd. Every stage is keyed by its inputs and rebuilt only when
// they change; with nothing changed, Build returns in about a second.
package nodeimage

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/stateful-conformance/stateful-conformance/pkg/buildcache"
	"github.com/stateful-conformance/stateful-conformance/pkg/docker"
	"github.com/stateful-conformance/stateful-conformance/pkg/gobuild"
	"github.com/stateful-conformance/stateful-conformance/pkg/preflight"
)

// Repository is where the node images go in the local Docker engine.
const Repository = "stateful-conformance/node"

const (
	rootfsRepository = "stateful-conformance/node-rootfs"
	baseRepository   = "stateful-conformance/node-base"
	// DefaultDebianMirror is the mirror debootstrap uses unless told otherwise.
	DefaultDebianMirror = "http://deb.debian.org/debian"
	debianSuite         = "bookworm"
	// needGiB is the free disk a cold build needs: Go build cache, root
	// filesystem, component images and two copies of the node image.
	needGiB = 10
)

// The recipe is part of every key: a change to how the image is made
// rebuilds it even when no input changed.
//
//go:embed nodeimage.go
var recipe string

//go:embed components.go
var componentsRecipe string

// Options configure a build.
type Options struct {
	// RepoRoot is the project's checkout (images/ and go.mod are read there).
	RepoRoot string
	Cache    *buildcache.Cache
	// Log receives progress; nil discards it.
	Log io.Writer
	// DebianMirror overrides DefaultDebianMirror.
	DebianMirror string
}

// plan is everything Build decides before building anything.
type plan struct {
	o                                                Options
	versions                                         Versions
	kubernetes, etcd, coredns, cni                   gobuild.Spec
	kubernetesKey, etcdKey, corednsKey, cniKey       string
	pauseKey, rootfsKey, componentsKey, nodeKey, tag string
}

func newPlan(ctx context.Context, o Options) (*plan, error) {
	v, err := ReadVersions(o.RepoRoot)
	if err != nil {
		return nil, err
	}
	p := &plan{o: o, versions: v}
	p.kubernetes = gobuild.Spec{
		Name:      "kubernetes",
		ModuleDir: filepath.Join(o.RepoRoot, "images/kubernetes"),
		Packages: []string{
			"k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kubeadm", "k8s.io/kubernetes/cmd/kubectl",
			"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager",
			"k8s.io/kubernetes/cmd/kube-scheduler", "k8s.io/kubernetes/cmd/kube-proxy",
		},
		LDFlags: kubernetesLDFlags(v.Kubernetes),
	}
	p.etcd = gobuild.Spec{
		Name:      "etcd",
		ModuleDir: filepath.Join(o.RepoRoot, "images/etcd"),
		Packages:  []string{"go.etcd.io/etcd/server/v3"},
		LDFlags:   "-s -w",
	}
	p.coredns = gobuild.Spec{
		Name:      "coredns",
		ModuleDir: filepath.Join(o.RepoRoot, "images/coredns"),
		// images/coredns/main.go: CoreDNS with the plugins a cluster uses.
		Packages: []string{"."},
		Sources:  []string{filepath.Join(o.RepoRoot, "images/coredns/main.go")},
		LDFlags:  "-s -w",
	}
	p.cni = gobuild.Spec{
		Name: "cni-plugins",
		Packages: []string{
			"github.com/containernetworking/plugins/plugins/main/bridge",
			"github.com/containernetworking/plugins/plugins/main/loopback",
			"github.com/containernetworking/plugins/plugins/ipam/host-local",
			"github.com/containernetworking/plugins/plugins/meta/portmap",
		},
		Install: CNIPluginsVersion,
		LDFlags: "-s -w",
	}
	for _, s := range []struct {
		spec *gobuild.Spec
		key  *string
	}{{&p.kubernetes, &p.kubernetesKey}, {&p.etcd, &p.etcdKey}, {&p.coredns, &p.corednsKey}, {&p.cni, &p.cniKey}} {
		if *s.key, err = gobuild.Key(ctx, *s.spec); err != nil {
			return nil, err
		}
	}
	// pause.c comes from the Kubernetes module, whose version pins its bytes.
	p.pauseKey = buildcache.NewHasher().String("pause", v.Kubernetes).String("cc", pauseCFlags).Sum()

	rootfs := buildcache.NewHasher().String("suite", debianSuite).String("recipe", rootfsRecipe)
	if err := rootfs.File("packages", filepath.Join(o.RepoRoot, "images/node/rootfs-packages")); err != nil {
		return nil, err
	}
	p.rootfsKey = rootfs.Sum()

	components := buildcache.NewHasher().
		String("recipe", componentsRecipe).
		String("versions", fmt.Sprint(v)).
		String("kubernetes", p.kubernetesKey).String("etcd", p.etcdKey).String("coredns", p.corednsKey).
		String("pause", p.pauseKey).String("rootfs", p.rootfsKey)
	if err := components.Tree("kube-proxy", os.DirFS(filepath.Join(o.RepoRoot, "images/kube-proxy"))); err != nil {
		return nil, err
	}
	p.componentsKey = components.Sum()

	node := buildcache.NewHasher().
		String("recipe", recipe).
		String("kind", v.Kind).
		String("rootfs", p.rootfsKey).String("components", p.componentsKey).
		String("kubernetes", p.kubernetesKey).String("cni", p.cniKey)
	if err := node.Tree("node", os.DirFS(filepath.Join(o.RepoRoot, "images/node"))); err != nil {
		return nil, err
	}
	p.nodeKey = node.Sum()
	p.tag = fmt.Sprintf("%s:%s-%s", Repository, v.Kubernetes, p.nodeKey[:12])
	return p, nil
}

// Tag returns the node image tag the current sources build, without
// building anything.
func Tag(ctx context.Context, o Options) (string, error) {
	p, err := newPlan(ctx, o)
	if err != nil {
		return "", err
	}
	return p.tag, nil
}

// Build makes sure the node image for the current sources exists in the
// local Docker engine and returns its tag.
func Build(ctx context.Context, o Options) (string, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.DebianMirror == "" {
		o.DebianMirror = DefaultDebianMirror
	}
	p, err := newPlan(ctx, o)
	if err != nil {
		return "", err
	}
	if err := docker.Check(ctx); err != nil {
		return "", err
	}
	if docker.ImageExists(ctx, p.tag) {
		fmt.Fprintf(o.Log, "• node image %s is up to date\n", p.tag)
		return p.tag, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("building the node image needs root (debootstrap and chroot): run as root, or use IMAGES=upstream on a machine that reaches a registry")
	}
	root, err := docker.RootDir(ctx)
	if err != nil {
		return "", err
	}
	if err := preflight.Disk("the node image build", needGiB, root, o.Cache.Root); err != nil {
		return "", err
	}
	start := time.Now()
	fmt.Fprintf(o.Log, "• building node image %s (Kubernetes %s, kind %s) from source\n", p.tag, p.versions.Kubernetes, p.versions.Kind)

	// debootstrap waits mostly on the mirror and dpkg while the compiler
	// keeps both cores busy: run it alongside the Go builds.
	type result struct {
		tag string
		err error
	}
	rootfsDone := make(chan result, 1)
	rootfsCtx, cancelRootfs := context.WithCancel(ctx)
	defer cancelRootfs()
	go func() {
		tag, err := p.rootfsImage(rootfsCtx)
		rootfsDone <- result{tag, err}
	}()
	bins := map[string]string{}
	for _, s := range []gobuild.Spec{p.kubernetes, p.etcd, p.coredns, p.cni} {
		dir, err := gobuild.Build(ctx, o.Cache, s, o.Log)
		if err != nil {
			cancelRootfs()
			<-rootfsDone
			return "", err
		}
		bins[s.Name] = dir
	}
	pause, err := p.buildPause(ctx)
	if err != nil {
		cancelRootfs()
		<-rootfsDone
		return "", err
	}
	r := <-rootfsDone
	if r.err != nil {
		return "", r.err
	}
	rootfs := r.tag
	components, err := p.componentsArchive(ctx, bins, pause, rootfs)
	if err != nil {
		return "", err
	}
	base, err := p.baseImage(ctx, bins, rootfs)
	if err != nil {
		return "", err
	}
	if err := p.preload(ctx, base, components); err != nil {
		return "", err
	}
	p.pruneImages(ctx)
	fmt.Fprintf(o.Log, "• node image %s built in %s\n", p.tag, time.Since(start).Round(time.Second))
	return p.tag, nil
}

func kubernetesLDFlags(version string) string {
	flags := []string{"-s", "-w"}
	// Without these the binaries report v0.0.0-master and kubeadm's version
	// checks fail.
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		for _, kv := range [][2]string{
			{"gitVersion", version},
			{"gitMajor", "1"},
			{"gitMinor", minor(version)},
			{"gitCommit", "0000000000000000000000000000000000000000"},
			{"gitTreeState", "clean"},
			{"buildDate", "1970-01-01T00:00:00Z"},
		} {
			flags = append(flags, "-X", pkg+"."+kv[0]+"="+kv[1])
		}
	}
	return strings.Join(flags, " ")
}

const pauseCFlags = "-Os -static -Wall -Werror"

// buildPause compiles pause.c from the Kubernetes module with the host's C
// compiler (the same recipe as upstream's build/pause).
func (p *plan) buildPause(ctx context.Context) (string, error) {
	return p.o.Cache.Ensure("bin/pause", p.pauseKey, func(out string) error {
		fmt.Fprintln(p.o.Log, "• building pause")
		src, err := moduleDir(ctx, p.kubernetes.ModuleDir, "k8s.io/kubernetes")
		if err != nil {
			return err
		}
		args := append(strings.Fields(pauseCFlags), "-DVERSION="+PauseTags[len(PauseTags)-1],
			"-o", filepath.Join(out, "pause"), filepath.Join(src, "build/pause/linux/pause.c"))
		if out, err := exec.CommandContext(ctx, "cc", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("cc pause.c: %w\n%s (install a C compiler and static libc: apt-get install gcc libc6-dev)", err, out)
		}
		return nil
	})
}

// moduleDir is the module cache directory of module as required from dir.
func moduleDir(ctx context.Context, dir, module string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w: %s", module, err, stderr.String())
	}
	d := strings.TrimSpace(string(out))
	if d == "" {
		return "", fmt.Errorf("module %s is not in the module cache (go mod download failed?)", module)
	}
	return d, nil
}

// rootfsRecipe describes rootfsImage; it is part of the root filesystem key.
const rootfsRecipe = "debootstrap --variant=minbase; drop apt caches, man, locales; empty resolv.conf, machine-id; no hostname; docker import"

// rootfsImage debootstraps the node's root filesystem and imports it into
// Docker, once per package list.
func (p *plan) rootfsImage(ctx context.Context) (string, error) {
	tag := rootfsRepository + ":" + p.rootfsKey[:16]
	if docker.ImageExists(ctx, tag) {
		return tag, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("debootstrap is not installed: apt-get install debootstrap")
	}
	pkgs, err := readList(filepath.Join(p.o.RepoRoot, "images/node/rootfs-packages"))
	if err != nil {
		return "", err
	}
	start := time.Now()
	fmt.Fprintf(p.o.Log, "• debootstrap %s (%d packages) from %s ...\n", debianSuite, len(pkgs), p.o.DebianMirror)
	dir, err := os.MkdirTemp(p.o.Cache.Root, "rootfs-")
	if err != nil {
		return "", err
	}
	defer removeRootfs(dir)
	var logBuf bytes.Buffer
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+strings.Join(pkgs, ","), debianSuite, dir, p.o.DebianMirror)
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("debootstrap %s from %s failed: %w\n%s", debianSuite, p.o.DebianMirror, err, gobuild.LastLines(logBuf.String(), 20))
	}
	for _, junk := range []string{"var/cache/apt", "var/lib/apt/lists", "usr/share/man", "usr/share/locale", "etc/hostname"} {
		if err := os.RemoveAll(filepath.Join(dir, junk)); err != nil {
			return "", err
		}
	}
	// kind's entrypoint writes these at start; empty means "not this build's".
	for _, empty := range []string{"etc/resolv.conf", "etc/machine-id"} {
		if err := os.WriteFile(filepath.Join(dir, empty), nil, 0o644); err != nil {
			return "", err
		}
	}
	tar := exec.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "-C", dir, "-cf", "-", ".")
	stdout, err := tar.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := tar.Start(); err != nil {
		return "", err
	}
	_, importErr := docker.RunIO(ctx, stdout, nil, "import", "--change", "ENV container=docker", "-", tag)
	if err := tar.Wait(); err != nil {
		return "", fmt.Errorf("tar of the root filesystem: %w", err)
	}
	if importErr != nil {
		return "", importErr
	}
	fmt.Fprintf(p.o.Log, "  root filesystem %s in %s\n", tag, time.Since(start).Round(time.Second))
	return tag, nil
}

// baseImage is the node image before preloading: root filesystem, kind's
// base files, the project's node files and the node binaries.
func (p *plan) baseImage(ctx context.Context, bins map[string]string, rootfs string) (string, error) {
	tag := baseRepository + ":" + p.nodeKey[:16]
	if docker.ImageExists(ctx, tag) {
		return tag, nil
	}
	fmt.Fprintln(p.o.Log, "• assembling the node's file system (docker build)")
	ctxDir, err := os.MkdirTemp(p.o.Cache.Root, "node-context-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(ctxDir)

	kindDir, err := moduleDir(ctx, p.o.RepoRoot, "sigs.k8s.io/kind")
	if err != nil {
		return "", err
	}
	// kind's Dockerfile copies scripts 0755 and everything else 0644.
	err = copyTree(filepath.Join(kindDir, "images/base/files"), filepath.Join(ctxDir, "kind"), func(rel string) os.FileMode {
		if strings.HasPrefix(rel, "usr/local/bin/") || strings.HasPrefix(rel, "kind/bin/") {
			return 0o755
		}
		return 0o644
	})
	if err != nil {
		return "", fmt.Errorf("kind base files: %w", err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "kind/kind/version"), []byte(p.versions.Kubernetes+"\n"), 0o644); err != nil {
		return "", err
	}
	nodeDir := filepath.Join(p.o.RepoRoot, "images/node")
	if err := copyTree(filepath.Join(nodeDir, "files"), filepath.Join(ctxDir, "files"), nil); err != nil {
		return "", err
	}
	for _, f := range []string{"Dockerfile", "setup.sh"} {
		if err := copyFile(filepath.Join(nodeDir, f), filepath.Join(ctxDir, f), 0); err != nil {
			return "", err
		}
	}
	for _, b := range []string{"kubelet", "kubeadm", "kubectl"} {
		if err := copyFile(filepath.Join(bins["kubernetes"], b), filepath.Join(ctxDir, "bin/kubernetes", b), 0o755); err != nil {
			return "", err
		}
	}
	if err := copyTree(bins["cni-plugins"], filepath.Join(ctxDir, "bin/cni"), func(string) os.FileMode { return 0o755 }); err != nil {
		return "", err
	}
	if err := docker.Build(ctx, ctxDir, tag, map[string]string{"ROOTFS": rootfs}); err != nil {
		return "", err
	}
	return tag, nil
}

// preloadScript starts the node's containerd in a build container and
// imports the component images, as kind does for its node images.
const preloadScript = `set -eu
containerd >/tmp/containerd-preload.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr version >/dev/null || { cat /tmp/containerd-preload.log; exit 1; }
ctr -n k8s.io images import --all-platforms --no-unpack --digests /preload/components.tar >/dev/null
for ref in $(ctr -n k8s.io images ls -q); do ctr -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null; done
ctr -n k8s.io images ls -q | grep -v -e '^sha256:' -e '^import-'
kill "$pid"; wait "$pid" || true
rm -f /tmp/containerd-preload.log
`

// preload imports the component images into the node's containerd and
// commits the result as the final node image.
func (p *plan) preload(ctx context.Context, base, components string) error {
	fmt.Fprintln(p.o.Log, "• preloading the control-plane images into the node's containerd")
	cid, err := docker.Run(ctx, "run", "-d", "--privileged", "--network", "none",
		"-v", filepath.Dir(components)+":/preload:ro", "--entrypoint", "sleep", base, "infinity")
	if err != nil {
		return err
	}
	defer docker.Run(context.WithoutCancel(ctx), "rm", "-f", cid)
	out, err := docker.Run(ctx, "exec", cid, "bash", "-c", preloadScript)
	if err != nil {
		return fmt.Errorf("preloading images: %w", err)
	}
	fmt.Fprintf(p.o.Log, "  preloaded: %s\n", strings.ReplaceAll(out, "\n", " "))
	// The build container ran sleep; the node image runs kind's entrypoint.
	// STOPSIGNAL (SIGRTMIN+3, systemd's) carries over from the base image.
	_, err = docker.Run(ctx, "commit",
		"--change", `ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]`,
		"--change", `CMD []`,
		"--change", "LABEL io.stateful-conformance.node.inputs="+p.nodeKey,
		cid, p.tag)
	return err
}

// pruneImages removes node images of earlier inputs so disk use stays flat.
// An image a container still uses is kept (docker refuses to remove it).
func (p *plan) pruneImages(ctx context.Context) {
	keep := map[string]bool{
		p.tag: true,
		rootfsRepository + ":" + p.rootfsKey[:16]: true,
		baseRepository + ":" + p.nodeKey[:16]:     true,
	}
	for _, repo := range []string{Repository, baseRepository, rootfsRepository} {
		refs, _ := docker.Images(ctx, repo)
		for _, ref := range refs {
			if !keep[ref] {
				if _, err := docker.Run(ctx, "rmi", ref); err == nil {
					fmt.Fprintf(p.o.Log, "  removed superseded image %s\n", ref)
				}
			}
		}
	}
	_ = p.o.Cache.Prune("components", p.componentsKey)
	_ = p.o.Cache.Prune("bin/pause", p.pauseKey)
}

// removeRootfs deletes a debootstrap target, first detaching what an
// interrupted debootstrap left mounted in it (/proc, /sys), so that removal
// never reaches into the host's pseudo file systems.
func removeRootfs(dir string) {
	if data, err := os.ReadFile("/proc/self/mounts"); err == nil {
		var mounts []string
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
				mounts = append(mounts, f[1])
			}
		}
		sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
		for _, m := range mounts {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	os.RemoveAll(dir)
}

func readList(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, nil
}
