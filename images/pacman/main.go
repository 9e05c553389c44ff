// Command pacman is the lab's front end: the Pac-Man game's HTTP API (high
// scores and per-user statistics kept in MongoDB) as the original Node.js
// app serves it, with a page that lists high scores and takes a new one.
// Unlike the original it rejects bad input with a 4xx, reports a missing
// database with a 503, and rides out the database being away: the driver
// reconnects by itself, and requests fail fast meanwhile.
package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

//go:embed static
var static embed.FS

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pacman:", err)
		os.Exit(2)
	}
	client, err := mongo.Connect(cfg.clientOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "pacman: database settings:", err)
		os.Exit(2)
	}
	host, _ := os.Hostname()
	s := &server{db: client.Database(cfg.database), host: host, location: nodeLocation(cfg.nodeName), log: log}
	srv := &http.Server{Addr: ":" + cfg.port, Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		// Keep serving while the pod's removal from its Services' endpoints
		// reaches kube-proxy and the ingress controller (which re-reads
		// endpoints at most every 2 s), so no request lands on a closed port.
		if d := shutdownDelay(os.Getenv("SHUTDOWN_DELAY")); d > 0 {
			log.Info("terminating: serving on while endpoints are updated", "for", d)
			time.Sleep(d)
		}
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
		client.Disconnect(shutdown)
	}()
	log.Info("serving", "port", cfg.port, "database", cfg.database, "hosts", cfg.hosts)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "pacman:", err)
		os.Exit(1)
	}
}

// shutdownDelay is SHUTDOWN_DELAY (a Go duration), 3 s when unset or bad.
func shutdownDelay(v string) time.Duration {
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return d
	}
	return 3 * time.Second
}

// staticFiles is the page and its assets.
func staticFiles() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	return http.FileServerFS(sub)
}
