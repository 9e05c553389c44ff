// Command csi-hostpath is the project's hostpath CSI plugin (package
// pkg/csihostpath): it serves CSI on --endpoint, registers with the kubelet
// through --registry-dir, and answers GET /healthz on --health-addr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/stateful-conformance/stateful-conformance/pkg/csihostpath"
)

var version = "dev"

func main() {
	endpoint := flag.String("endpoint", "unix:///csi/csi.sock", "CSI socket, as this container sees it")
	nodeID := flag.String("node-id", os.Getenv("NODE_NAME"), "the node's name [NODE_NAME]")
	dataDir := flag.String("data-dir", csihostpath.DefaultDataDir, "where volumes and snapshots live (the same path on the node and in the container)")
	registryDir := flag.String("registry-dir", "", "the kubelet's plugins_registry directory as this container sees it; empty: do not register")
	kubeletEndpoint := flag.String("kubelet-endpoint", "/var/lib/kubelet/plugins/"+csihostpath.DriverName+"/csi.sock", "the CSI socket as the kubelet sees it on the node")
	healthAddr := flag.String("health-addr", ":9808", "address of the liveness endpoint (GET /healthz); empty: none")
	maxVolumes := flag.Int64("max-volumes-per-node", 0, "reported to the scheduler (0: no limit)")
	fault := flag.String("fault", "", "break the plugin on purpose, only for the suite's self-tests: "+csihostpath.FaultPublishEmpty+" or "+csihostpath.FaultRestoreEmpty)
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	d, err := csihostpath.New(csihostpath.Config{NodeID: *nodeID, DataDir: *dataDir, Version: version, MaxVolumesPerNode: *maxVolumes, Log: log, Fault: *fault})
	if err != nil {
		fmt.Fprintln(os.Stderr, "csi-hostpath:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	errs := make(chan error, 3)
	go func() { errs <- d.Serve(ctx, *endpoint) }()
	if *healthAddr != "" {
		go func() { errs <- d.ServeHealth(ctx, *healthAddr) }()
	}
	if *registryDir != "" {
		r := &csihostpath.Registrar{DriverName: csihostpath.DriverName, Endpoint: *kubeletEndpoint, Registered: func(err error) {
			if err != nil {
				log.Error("registration with the kubelet failed", "error", err)
				return
			}
			log.Info("registered with the kubelet", "driver", csihostpath.DriverName, "node", *nodeID)
		}}
		go func() { errs <- r.Serve(ctx, csihostpath.RegistrationSocket(*registryDir, csihostpath.DriverName)) }()
	}
	log.Info("serving", "driver", csihostpath.DriverName, "version", version, "node", *nodeID, "endpoint", *endpoint, "data", *dataDir)
	select {
	case <-ctx.Done():
	case err := <-errs:
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error("stopped", "error", err)
			os.Exit(1)
		}
	}
}
