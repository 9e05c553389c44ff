package cluster

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kind.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

const header = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"

func TestProjectConfigFitsSourceImages(t *testing.T) {
	cfg, err := LoadConfig("../../kind-config.yaml")
	require.NoError(t, err)
	require.NoError(t, ConfineToLoopback("kind-config.yaml", cfg))
	require.NoError(t, CheckSourceImageFits("kind-config.yaml", cfg))
	assert.Equal(t, "127.0.0.1", cfg.Networking.APIServerAddress)
}

func TestConfineToLoopback(t *testing.T) {
	cfg, err := LoadConfig(write(t, header+"nodes:\n- role: control-plane\n  extraPortMappings:\n  - containerPort: 80\n    hostPort: 8080\n"))
	require.NoError(t, err)
	require.NoError(t, ConfineToLoopback("f", cfg))
	assert.Equal(t, "127.0.0.1", cfg.Networking.APIServerAddress, "filled in")
	assert.Equal(t, "127.0.0.1", cfg.Nodes[0].ExtraPortMappings[0].ListenAddress, "filled in")

	cfg, err = LoadConfig(write(t, header+"networking:\n  apiServerAddress: 0.0.0.0\n"))
	require.NoError(t, err)
	assert.ErrorContains(t, ConfineToLoopback("f", cfg), "apiServerAddress is 0.0.0.0")
}

func TestCheckSourceImageFits(t *testing.T) {
	refused := map[string]string{
		"two nodes":      "nodes:\n- role: control-plane\n- role: worker\n",
		"pod subnet":     "networking:\n  podSubnet: 10.200.0.0/16\n",
		"service subnet": "networking:\n  serviceSubnet: 10.100.0.0/16\n",
		"ipv6":           "networking:\n  ipFamily: ipv6\n",
		"no default CNI": "networking:\n  disableDefaultCNI: true\n",
		"ipvs":           "networking:\n  kubeProxyMode: ipvs\n",
		"named image":    "nodes:\n- role: control-plane\n  image: kindest/node:v1.34.0\n",
		"worker only":    "nodes:\n- role: worker\n",
	}
	for name, body := range refused {
		cfg, err := LoadConfig(write(t, header+body))
		require.NoError(t, err, name)
		assert.Error(t, CheckSourceImageFits("f", cfg), name)
	}
	cfg, err := LoadConfig(write(t, header))
	require.NoError(t, err)
	assert.Equal(t, v1alpha4.ControlPlaneRole, cfg.Nodes[0].Role, "no nodes means one control plane, as in kind")
	assert.NoError(t, CheckSourceImageFits("f", cfg))
}

func TestParseImageSource(t *testing.T) {
	for in, want := range map[string]ImageSource{"": Auto, "auto": Auto, "SOURCE": Source, " upstream ": Upstream} {
		got, err := ParseImageSource(in)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := ParseImageSource("registry")
	assert.ErrorContains(t, err, "use auto (the default), source or upstream")
}
