package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// mongoBin is the lab's real database server (images/mongo), built once.
var mongoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pacman-test-")
	if err != nil {
		panic(err)
	}
	mongoBin = filepath.Join(dir, "mongo")
	build := exec.Command("go", "build", "-o", mongoBin, ".")
	build.Dir = "../mongo"
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building images/mongo:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startMongo runs the database server on loopback port with data in dir
// until stop; it waits for its readiness endpoint.
func startMongo(t *testing.T, dir string, port int) (stop func()) {
	t.Helper()
	health := freePort(t)
	cmd := exec.Command(mongoBin, "-listen", "127.0.0.1:"+strconv.Itoa(port), "-health-listen", "127.0.0.1:"+strconv.Itoa(health), "-data-dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	client := &http.Client{Timeout: time.Second}
	for i := 0; i < 100; i++ {
		if resp, err := client.Get("http://127.0.0.1:" + strconv.Itoa(health) + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the database server never became ready")
	return nil
}

// newGame serves the API against the database on port, as the lab's
// deployment configures it (the secret's user, PLAIN for this server).
func newGame(t *testing.T, port int) *httptest.Server {
	t.Helper()
	env := map[string]string{
		"MONGO_SERVICE_HOST": "127.0.0.1", "MY_MONGO_PORT": strconv.Itoa(port),
		"MONGO_AUTH_USER": "blinky", "MONGO_AUTH_PWD": "pinky", "MONGO_DATABASE": "pacman",
		"MONGO_AUTH_MECHANISM": "PLAIN",
	}
	cfg, err := configFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	client, err := mongo.Connect(cfg.clientOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	s := &server{db: client.Database("pacman"), host: "pacman-test", log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		location: func(context.Context) (string, string) { return "unknown", "unknown" }}
	srv := httptest.NewServer(s.routes())
	t.Cleanup(srv.Close)
	return srv
}

type reply struct {
	code int
	body map[string]any
	raw  string
}

func post(t *testing.T, srv *httptest.Server, path, body string) reply {
	t.Helper()
	resp, err := http.Post(srv.URL+path, "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return read(t, resp)
}

func get(t *testing.T, srv *httptest.Server, path string) reply {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	return read(t, resp)
}

func read(t *testing.T, resp *http.Response) reply {
	t.Helper()
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{code: resp.StatusCode, raw: string(raw)}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		_ = json.Unmarshal(raw, &r.body)
	}
	return r
}

func listScores(t *testing.T, srv *httptest.Server) []highScore {
	t.Helper()
	resp, err := http.Get(srv.URL + "/highscores/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /highscores/list: %s", resp.Status)
	}
	var scores []highScore
	if err := json.NewDecoder(resp.Body).Decode(&scores); err != nil {
		t.Fatal(err)
	}
	return scores
}

func score(name string, points int) string {
	return url.Values{"name": {name}, "cloud": {"kind"}, "zone": {"z1"}, "host": {"pacman-0"}, "score": {strconv.Itoa(points)}, "level": {"2"}}.Encode()
}

func TestHighScores(t *testing.T) {
	port := freePort(t)
	startMongo(t, t.TempDir(), port)
	srv := newGame(t, port)

	r := post(t, srv, "/highscores", score("clyde", 4200))
	if r.code != http.StatusOK || r.body["rs"] != "success" || r.body["name"] != "clyde" || r.body["score"] != float64(4200) || r.body["level"] != float64(2) || r.body["zone"] != "z1" {
		t.Fatalf("POST /highscores: %d %s", r.code, r.raw)
	}
	for i := 0; i < 11; i++ {
		post(t, srv, "/highscores", score(fmt.Sprintf("ghost%d", i), 100*i))
	}
	scores := listScores(t, srv)
	if len(scores) != 10 {
		t.Fatalf("%d scores listed, want the top 10", len(scores))
	}
	if scores[0] != (highScore{Name: "clyde", Cloud: "kind", Zone: "z1", Host: "pacman-0", Score: 4200}) {
		t.Fatalf("best score %+v, want clyde's 4200", scores[0])
	}
	for i := 1; i < len(scores); i++ {
		if scores[i].Score > scores[i-1].Score {
			t.Fatalf("scores not best first: %v", scores)
		}
	}
	if page := get(t, srv, "/"); page.code != http.StatusOK || !strings.Contains(page.raw, "High scores") {
		t.Fatalf("GET /: %d", page.code)
	}
}

func TestBadInputIsRefusedAndNothingIsWritten(t *testing.T) {
	port := freePort(t)
	startMongo(t, t.TempDir(), port)
	srv := newGame(t, port)
	post(t, srv, "/highscores", score("inky", 10))
	for name, c := range map[string]struct {
		path, body, want string
	}{
		"malformed form":         {"/highscores", "name=%zz&score=1", "malformed form body"},
		"score not a number":     {"/highscores", "name=pinky&score=lots", `"score" must be a whole number`},
		"level not a number":     {"/highscores", "name=pinky&score=5&level=two", `"level" must be a whole number`},
		"no name":                {"/highscores", "score=5", `"name" is required`},
		"stats without a user":   {"/user/stats", "score=5", `"userId" is required`},
		"stats of a made-up id":  {"/user/stats", "userId=not-an-id&score=1", "is not an id"},
		"stats lives not number": {"/user/stats", "userId=5f0000000000000000000000&lives=many", `"lives" must be a whole number`},
	} {
		r := post(t, srv, c.path, c.body)
		if r.code != http.StatusBadRequest || r.body["rs"] != "error" || !strings.Contains(fmt.Sprint(r.body["error"]), c.want) {
			t.Errorf("%s: %d %s, want 400 with %q", name, r.code, r.raw, c.want)
		}
	}
	if scores := listScores(t, srv); len(scores) != 1 || scores[0].Name != "inky" {
		t.Fatalf("after refused requests the scores are %v, want only inky's", scores)
	}
}

func TestUserStats(t *testing.T) {
	port := freePort(t)
	startMongo(t, t.TempDir(), port)
	srv := newGame(t, port)
	var id string
	r := get(t, srv, "/user/id")
	if r.code != http.StatusOK || json.Unmarshal([]byte(r.raw), &id) != nil || len(id) != 24 {
		t.Fatalf("GET /user/id: %d %s", r.code, r.raw)
	}
	for i := 1; i <= 2; i++ {
		body := url.Values{"userId": {id}, "cloud": {"kind"}, "zone": {"z1"}, "host": {"pacman-0"}, "score": {strconv.Itoa(50 * i)}, "level": {"1"}, "lives": {"3"}, "elapsedTime": {"12"}}.Encode()
		if r := post(t, srv, "/user/stats", body); r.code != http.StatusOK || r.body["rs"] != "success" {
			t.Fatalf("POST /user/stats: %d %s", r.code, r.raw)
		}
	}
	get(t, srv, "/user/id") // a player with no score yet is not listed
	resp, err := http.Get(srv.URL + "/user/stats")
	if err != nil {
		t.Fatal(err)
	}
	var stats []userStat
	json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	want := userStat{Cloud: "kind", Zone: "z1", Host: "pacman-0", Score: 100, Level: 1, Lives: 3, Et: 12, Txncount: 2}
	if len(stats) != 1 || stats[0] != want {
		t.Fatalf("GET /user/stats: %+v, want [%+v]", stats, want)
	}
	if r := post(t, srv, "/user/stats", "userId=5f0000000000000000000000&score=1"); r.code != http.StatusNotFound {
		t.Fatalf("stats of an unknown user: %d %s, want 404", r.code, r.raw)
	}
}

func TestLocation(t *testing.T) {
	port := freePort(t)
	srv := newGame(t, port)
	r := get(t, srv, "/location/metadata")
	if r.code != http.StatusOK || r.body["host"] != "pacman-test" || r.body["cloud"] != "unknown" || r.body["zone"] != "unknown" {
		t.Fatalf("GET /location/metadata: %d %s", r.code, r.raw)
	}
}

// With the database away the game answers 503 within its 5 s server
// selection bound, and serves again by
// itself when the database is back (the original needed a restart).
func TestDatabaseAwayAndBack(t *testing.T) {
	port := freePort(t)
	dir := t.TempDir()
	stop := startMongo(t, dir, port)
	srv := newGame(t, port)
	post(t, srv, "/highscores", score("blinky", 300))
	stop()

	start := time.Now()
	r := post(t, srv, "/highscores", score("sue", 1))
	if r.code != http.StatusServiceUnavailable || r.body["rs"] != "error" || !strings.Contains(fmt.Sprint(r.body["error"]), "not available") {
		t.Fatalf("with the database away: %d %s, want 503", r.code, r.raw)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("the 503 took %s", took)
	}
	if r := get(t, srv, "/highscores/list"); r.code != http.StatusServiceUnavailable {
		t.Fatalf("list with the database away: %d %s", r.code, r.raw)
	}

	startMongo(t, dir, port)
	// Bounded: 40 tries, half a second apart.
	var scores []highScore
	for i := 0; i < 40; i++ {
		resp, err := http.Get(srv.URL + "/highscores/list")
		if err == nil {
			if resp.StatusCode == http.StatusOK {
				json.NewDecoder(resp.Body).Decode(&scores)
				resp.Body.Close()
				break
			}
			resp.Body.Close()
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(scores) != 1 || scores[0].Name != "blinky" {
		t.Fatalf("after the database came back the scores are %v, want blinky's (and not sue's)", scores)
	}
}

func TestShutdownDelay(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 3 * time.Second, "bad": 3 * time.Second, "0s": 0, "500ms": 500 * time.Millisecond} {
		if got := shutdownDelay(in); got != want {
			t.Errorf("shutdownDelay(%q) = %s, want %s", in, got, want)
		}
	}
}
