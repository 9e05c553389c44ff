package csihostpath

import (
	"context"
	"fmt"
	"path/filepath"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// KubeletRegistryDir is where the kubelet's plugin watcher looks for
// registration sockets.
const KubeletRegistryDir = "/var/lib/kubelet/plugins_registry"

// Registrar answers the kubelet's plugin registration calls, doing what
// node-driver-registrar does (it cannot be built here): the kubelet finds
// its socket in KubeletRegistryDir, asks GetInfo, then connects to the CSI
// endpoint and calls NodeGetInfo.
type Registrar struct {
	registerapi.UnimplementedRegistrationServer
	// DriverName is the CSI driver name.
	DriverName string
	// Endpoint is the CSI socket path as the kubelet sees it on the node.
	Endpoint string
	// Registered receives the kubelet's verdict (nil on success).
	Registered func(err error)
}

// GetInfo tells the kubelet what the plugin is and where its socket is.
func (r *Registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              r.DriverName,
		Endpoint:          r.Endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

// NotifyRegistrationStatus receives whether the kubelet registered the plugin.
func (r *Registrar) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if r.Registered != nil {
		if s.PluginRegistered {
			r.Registered(nil)
		} else {
			r.Registered(fmt.Errorf("kubelet refused to register %s: %s", r.DriverName, s.Error))
		}
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// RegistrationSocket is the socket path the kubelet watches for driver.
func RegistrationSocket(registryDir, driver string) string {
	return filepath.Join(registryDir, driver+"-reg.sock")
}

// Serve serves the registration API on socket until ctx ends.
func (r *Registrar) Serve(ctx context.Context, socket string) error {
	lis, err := listenUnix(socket)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, r)
	return serveUntil(ctx, srv, lis)
}
