package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stateful-conformance/stateful-conformance/pkg/cluster"
)

const testdata = "../../tests/testdata/"

// dockerAnswers reports whether a Docker engine is reachable here.
func dockerAnswers() bool {
	return exec.Command("docker", "version", "--format", "{{.Server.Version}}").Run() == nil
}

func registryReachable() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := net.DefaultResolver.LookupHost(ctx, cluster.UpstreamRegistry)
	return err == nil
}

// Bad input fails in seconds with one line naming the problem and the fix,
// and creates nothing.
func TestBadInput(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		env    map[string]string
		docker bool // the check needs a running engine to get that far
		// offline: the case is only wrong where the upstream registry cannot be reached
		offline bool
		want    []string
	}{
		{name: "unknown IMAGES", args: []string{"cluster", "up"}, env: map[string]string{"IMAGES": "floppy"},
			want: []string{`unknown IMAGES value "floppy"`, "auto", "source", "upstream"}},
		{name: "unknown field in kind config", args: []string{"cluster", "up", "-kind-config", testdata + "kind-config-unknown-field.yaml"},
			want: []string{"kind-config-unknown-field.yaml", `unknown field "node"`}},
		{name: "kind config not YAML", args: []string{"cluster", "up", "-kind-config", testdata + "kind-config-not-yaml.yaml"},
			want: []string{"kind-config-not-yaml.yaml", "not a valid kind v1alpha4 Cluster"}},
		{name: "not a kind config", args: []string{"cluster", "up", "-kind-config", testdata + "kind-config-wrong-kind.yaml"},
			want: []string{"want kind: Cluster", `got kind: "ClusterConfiguration"`}},
		{name: "missing kind config", args: []string{"cluster", "up", "-kind-config", testdata + "nope.yaml"},
			want: []string{"nope.yaml", "KIND_CONFIG"}},
		{name: "port mapping off loopback", args: []string{"cluster", "up", "-kind-config", testdata + "kind-config-public-port.yaml"},
			want: []string{"0.0.0.0", "listenAddress: 127.0.0.1"}},
		{name: "docker not running", args: []string{"cluster", "up", "-kind-config", "../../kind-config.yaml"},
			env:  map[string]string{"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
			want: []string{"docker is not running", "unix:///nonexistent/docker.sock", "dockerd-up"}},
		{name: "docker not running for the node image", args: []string{"node-image"},
			env:  map[string]string{"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
			want: []string{"docker is not running"}},
		{name: "multi-node with images from source", args: []string{"cluster", "up", "-kind-config", testdata + "kind-config-multinode.yaml"},
			env: map[string]string{"IMAGES": "source"}, docker: true,
			want: []string{"has 2 nodes", "single node", "IMAGES=upstream"}},
		{name: "upstream images with no registry", args: []string{"cluster", "up", "-kind-config", "../../kind-config.yaml"},
			env: map[string]string{"IMAGES": "upstream"}, docker: true, offline: true,
			want: []string{"IMAGES=upstream but registry-1.docker.io does not", "IMAGES=source"}},
		{name: "too little disk", args: []string{"cluster", "up", "-kind-config", "../../kind-config.yaml"},
			env: map[string]string{"IMAGES": "source", "SC_MIN_FREE_GIB": "1000000"}, docker: true,
			want: []string{"not enough disk", "needs 1000000 GiB", "free some space"}},
		{name: "bad disk override", args: []string{"cluster", "up", "-kind-config", "../../kind-config.yaml"},
			env: map[string]string{"IMAGES": "source", "SC_MIN_FREE_GIB": "lots"}, docker: true,
			want: []string{`SC_MIN_FREE_GIB="lots"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.docker && !dockerAnswers() {
				t.Skip("needs a running Docker engine to reach this check")
			}
			if c.offline && registryReachable() {
				t.Skip("the upstream registry is reachable here, so upstream images are not bad input")
			}
			name := "sc-badinput-" + strings.ReplaceAll(strings.ToLower(c.name), " ", "-")
			t.Setenv("CLUSTER_NAME", name)
			t.Setenv("SC_CACHE_DIR", t.TempDir())
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			start := time.Now()
			err := run(context.Background(), append(c.args, "-repo", "../.."), &stdout, &stderr)
			took := time.Since(start)
			require.Error(t, err)
			msg := err.Error()
			for _, w := range c.want {
				assert.Contains(t, msg, w)
			}
			assert.NotContains(t, msg, "\n", "the error is one line")
			assert.Less(t, took, 10*time.Second, "bad input fails in seconds")
			if dockerAnswers() {
				out, err := exec.Command("docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster="+name, "--format", "{{.Names}}").Output()
				require.NoError(t, err)
				assert.Empty(t, strings.TrimSpace(string(out)), "no container is left behind")
			}
		})
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"cluster"}, {"cluster", "sideways"}, {"image", "-repo", "../.."}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		var u usageError
		assert.ErrorAs(t, err, &u, "%v", args)
	}
}

func TestNotACheckout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"node-image", "-repo", t.TempDir()}, &stdout, &stderr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is not the stateful-conformance checkout")
}
