package cluster

import (
	"fmt"
	"os"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

const (
	// defaultPodSubnet and defaultServiceSubnet are kind's defaults, which the
	// source node image's CNI and egress guard are built for.
	defaultPodSubnet     = "10.244.0.0/16"
	defaultServiceSubnet = "10.96.0.0/12"
	loopback             = "127.0.0.1"
)

// LoadConfig reads a kind cluster config strictly: an unknown field or a
// wrong kind/apiVersion is an error naming the file, not a surprise later.
func LoadConfig(path string) (*v1alpha4.Cluster, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kind config: %w (set KIND_CONFIG or --kind-config to a kind v1alpha4 Cluster file)", err)
	}
	cfg := &v1alpha4.Cluster{}
	if err := yaml.UnmarshalStrict(data, cfg); err != nil {
		return nil, fmt.Errorf("kind config %s is not a valid kind v1alpha4 Cluster: %v", path, err)
	}
	if cfg.Kind != "Cluster" || cfg.APIVersion != "kind.x-k8s.io/v1alpha4" {
		return nil, fmt.Errorf("kind config %s: want kind: Cluster and apiVersion: kind.x-k8s.io/v1alpha4, got kind: %q apiVersion: %q", path, cfg.Kind, cfg.APIVersion)
	}
	if len(cfg.Nodes) == 0 {
		cfg.Nodes = []v1alpha4.Node{{Role: v1alpha4.ControlPlaneRole}}
	}
	return cfg, nil
}

// ConfineToLoopback makes the API server and every port mapping listen on
// 127.0.0.1 when they name no address, and refuses any other address: the
// cluster is reached only from this machine.
func ConfineToLoopback(path string, cfg *v1alpha4.Cluster) error {
	switch cfg.Networking.APIServerAddress {
	case "":
		cfg.Networking.APIServerAddress = loopback
	case loopback:
	default:
		return fmt.Errorf("kind config %s: networking.apiServerAddress is %s; the cluster must listen on 127.0.0.1 only: remove the field or set it to 127.0.0.1", path, cfg.Networking.APIServerAddress)
	}
	for i := range cfg.Nodes {
		for j := range cfg.Nodes[i].ExtraPortMappings {
			m := &cfg.Nodes[i].ExtraPortMappings[j]
			switch m.ListenAddress {
			case "":
				m.ListenAddress = loopback
			case loopback:
			default:
				return fmt.Errorf("kind config %s: node %d maps port %d on %s; port mappings must listen on 127.0.0.1 only: set listenAddress: 127.0.0.1", path, i, m.HostPort, m.ListenAddress)
			}
		}
	}
	return nil
}

// CheckSourceImageFits refuses configs the node image built from source
// cannot serve: its CNI is a static bridge for one node on kind's default
// pod subnet, and its egress guard knows kind's default subnets.
func CheckSourceImageFits(path string, cfg *v1alpha4.Cluster) error {
	fix := "or use IMAGES=upstream (kindnetd) on a machine that reaches a registry"
	if len(cfg.Nodes) != 1 || cfg.Nodes[0].Role != v1alpha4.ControlPlaneRole {
		return fmt.Errorf("kind config %s has %d nodes; the node image built from source networks a single node (a static CNI bridge; kindnetd cannot be built here): use one control-plane node, %s", path, len(cfg.Nodes), fix)
	}
	n := cfg.Networking
	if n.PodSubnet != "" && n.PodSubnet != defaultPodSubnet {
		return fmt.Errorf("kind config %s sets podSubnet %s; the node image built from source serves %s only: remove networking.podSubnet, %s", path, n.PodSubnet, defaultPodSubnet, fix)
	}
	if n.ServiceSubnet != "" && n.ServiceSubnet != defaultServiceSubnet {
		return fmt.Errorf("kind config %s sets serviceSubnet %s; the node image built from source serves %s only: remove networking.serviceSubnet, %s", path, n.ServiceSubnet, defaultServiceSubnet, fix)
	}
	if n.IPFamily != "" && n.IPFamily != v1alpha4.IPv4Family {
		return fmt.Errorf("kind config %s sets ipFamily %s; the node image built from source networks IPv4 only: remove networking.ipFamily, %s", path, n.IPFamily, fix)
	}
	if n.DisableDefaultCNI {
		return fmt.Errorf("kind config %s sets disableDefaultCNI; the node image built from source has its CNI built in and nothing here installs another: remove networking.disableDefaultCNI", path)
	}
	if n.KubeProxyMode != "" && n.KubeProxyMode != v1alpha4.IPTablesProxyMode {
		return fmt.Errorf("kind config %s sets kubeProxyMode %s; the node image built from source ships kube-proxy with iptables only: remove networking.kubeProxyMode, %s", path, n.KubeProxyMode, fix)
	}
	if cfg.Nodes[0].Image != "" {
		return fmt.Errorf("kind config %s names node image %s; with IMAGES=source the image is built here: remove nodes[0].image, or use IMAGES=upstream", path, cfg.Nodes[0].Image)
	}
	return nil
}
