package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs the server on loopback until stop (or the test's end); it
// returns the wire address.
func start(t *testing.T, dataDir string) (wire string, stop func()) {
	t.Helper()
	wire = "127.0.0.1:" + strconv.Itoa(freePort(t))
	health := "127.0.0.1:" + strconv.Itoa(freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, wire, health, dataDir, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	// Ready is what the pod's readiness probe asks; bounded like it.
	client := &http.Client{Timeout: time.Second}
	for i := 0; i < 100; i++ {
		resp, err := client.Get("http://" + health + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return wire, stop
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the server never became ready")
	return "", nil
}

// connect logs in as the pacman front end does: the lab secret's user and
// database, with the PLAIN mechanism, the only one this server takes.
func connect(t *testing.T, wire, user, password string) *mongo.Client {
	t.Helper()
	uri := "mongodb://" + user + ":" + password + "@" + wire + "/pacman?authMechanism=PLAIN"
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	return client
}

func TestHighScoresSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	wc := writeconcern.Majority()
	wc.Journal = ptr(true)
	wire, stop := start(t, dir)
	client := connect(t, wire, "blinky", "pinky")
	coll := client.Database("pacman").Collection("highscore", options.Collection().SetWriteConcern(wc))
	// The front end's write concern: majority, journaled.
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "name", Value: "clyde"}, {Key: "score", Value: 4200}}); err != nil {
		t.Fatalf("insert as blinky: %v", err)
	}
	client.Disconnect(ctx)
	stop()
	// A second server on the same data directory, as a restarted pod on the
	// same claim.
	wire, _ = start(t, dir)
	coll = connect(t, wire, "blinky", "pinky").Database("pacman").Collection("highscore")
	var got struct {
		Name  string `bson:"name"`
		Score int    `bson:"score"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "name", Value: "clyde"}}).Decode(&got); err != nil {
		t.Fatalf("the high score is gone after a restart: %v", err)
	}
	if got.Score != 4200 {
		t.Fatalf("score %d after a restart, want 4200", got.Score)
	}
}

// The server does not check passwords (FerretDB v1 with SQLite storage
// accepts any PLAIN credentials; the README says so). This test pins that
// down, so the day it starts enforcing them the README is revisited.
func TestCredentialsAreNotEnforced(t *testing.T) {
	wire, _ := start(t, t.TempDir())
	err := connect(t, wire, "blinky", "wrong").Database("pacman").RunCommand(context.Background(), bson.D{{Key: "ping", Value: 1}}).Err()
	if err != nil {
		t.Fatalf("a wrong password was refused (%v): the server now enforces credentials; update the README and this test", err)
	}
}

func TestReadinessFollowsTheServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	wire := "127.0.0.1:" + strconv.Itoa(freePort(t))
	health := "127.0.0.1:" + strconv.Itoa(freePort(t))
	done := make(chan error, 1)
	go func() { done <- serve(ctx, wire, health, dir, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	client := &http.Client{Timeout: time.Second}
	ready := false
	for i := 0; i < 100 && !ready; i++ {
		if resp, err := client.Get("http://" + health + "/readyz"); err == nil {
			ready = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
		if !ready {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !ready {
		t.Fatal("never ready")
	}
	cancel() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not stop within 10 s of SIGTERM")
	}
	if _, err := net.DialTimeout("tcp", wire, time.Second); err == nil {
		t.Fatal("the wire port still accepts connections after shutdown")
	}
}

func ptr[T any](v T) *T { return &v }
