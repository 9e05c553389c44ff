// Command mongo is the lab's database server: a MongoDB wire-protocol server
// (FerretDB, embedded, storing its data in SQLite files under --data-dir, the
// pod's volume). It creates the data directory, listens on --listen, answers
// GET /readyz on --health-listen once a MongoDB "ping" through its own
// listener succeeds, and shuts down cleanly on SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func main() {
	listen := flag.String("listen", ":27017", "MongoDB wire protocol address")
	healthListen := flag.String("health-listen", ":8081", "address of GET /readyz; empty: none")
	dataDir := flag.String("data-dir", "/data/db", "where the databases are kept (the pod's volume)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := serve(ctx, *listen, *healthListen, *dataDir, log); err != nil {
		fmt.Fprintln(os.Stderr, "mongo:", err)
		os.Exit(1)
	}
}

// serve runs the server until ctx ends.
func serve(ctx context.Context, listen, healthListen, dataDir string, log *slog.Logger) error {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	db, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
		Logger:    log,
	})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- db.Run(ctx) }()
	if healthListen != "" {
		go serveHealth(ctx, healthListen, localURI(listen))
	}
	fmt.Fprintf(os.Stderr, "mongo: serving the MongoDB wire protocol on %s, data in %s\n", listen, abs)
	return <-done
}

// localURI is the address this process's own listener answers on.
func localURI(listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		port = "27017"
	}
	return "mongodb://127.0.0.1:" + port + "/"
}

func serveHealth(ctx context.Context, addr, uri string) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(2 * time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mongo: health client:", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		pctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := client.Database("admin").RunCommand(pctx, bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
		client.Disconnect(shutdown)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "mongo: health endpoint:", err)
	}
}
