package nodeimage

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
)

// Versions are the upstream versions the node image is built from. Each is
// read from the go.mod that pins it, so the pin is the only place it is set.
type Versions struct {
	Kubernetes string // v1.34.4, from images/kubernetes/go.mod
	Etcd       string // v3.6.5, from images/etcd/go.mod
	CoreDNS    string // v1.14.3, from images/coredns/go.mod
	Kind       string // v0.30.0, from the project's go.mod
}

// CNIPluginsVersion is the containernetworking/plugins release the node's
// CNI is built from. Built with "go install pkg@version": the release's own
// go.mod and go.sum pin its dependencies.
const CNIPluginsVersion = "v1.7.1"

// PauseVersion is the tag the pause image is published under; containerd's
// sandbox image in kind's config is 3.10, kubeadm v1.34 asks for 3.10.1.
var PauseTags = []string{"3.10", "3.10.1"}

// ReadVersions reads the pins below repoRoot.
func ReadVersions(repoRoot string) (Versions, error) {
	var v Versions
	for _, pin := range []struct {
		gomod, module string
		dst           *string
	}{
		{"images/kubernetes/go.mod", "k8s.io/kubernetes", &v.Kubernetes},
		{"images/etcd/go.mod", "go.etcd.io/etcd/server/v3", &v.Etcd},
		{"images/coredns/go.mod", "github.com/coredns/coredns", &v.CoreDNS},
		{"go.mod", "sigs.k8s.io/kind", &v.Kind},
	} {
		version, err := required(filepath.Join(repoRoot, pin.gomod), pin.module)
		if err != nil {
			return v, err
		}
		*pin.dst = version
	}
	return v, nil
}

func required(gomod, module string) (string, error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	f, err := modfile.ParseLax(gomod, data, nil)
	if err != nil {
		return "", err
	}
	for _, r := range f.Require {
		if r.Mod.Path == module {
			return r.Mod.Version, nil
		}
	}
	return "", fmt.Errorf("%s does not require %s", gomod, module)
}

// Minor is "34" of "v1.34.4".
func minor(version string) string {
	parts := strings.Split(strings.TrimPrefix(version, "v"), ".")
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}
