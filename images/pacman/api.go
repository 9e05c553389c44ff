package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// server answers the game's API from database db.
type server struct {
	db *mongo.Database
	// host is the pod's hostname, reported with every score.
	host string
	// location reports the node's cloud and zone.
	location func(context.Context) (cloud, zone string)
	log      *slog.Logger
}

// writeConcern is the original's {w: "majority", j: true}; its wtimeout of
// 10000 ms is writeTimeout, the write's deadline (driver v2 bounds an
// operation by its context instead of wtimeout).
func writeConcern() *writeconcern.WriteConcern {
	j := true
	return &writeconcern.WriteConcern{W: "majority", Journal: &j}
}

const writeTimeout = 10 * time.Second

func (s *server) collection(name string) *mongo.Collection {
	return s.db.Collection(name, options.Collection().SetWriteConcern(writeConcern()))
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /", staticFiles())
	mux.HandleFunc("GET /highscores/list", s.listHighScores)
	mux.HandleFunc("POST /highscores", s.addHighScore)
	mux.HandleFunc("GET /user/id", s.newUser)
	mux.HandleFunc("POST /user/stats", s.updateUserStats)
	mux.HandleFunc("GET /user/stats", s.userStats)
	mux.HandleFunc("GET /location/metadata", s.locationMetadata)
	return mux
}

// requestError is bad input, answered with 400.
type requestError struct{ msg string }

func (e requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error { return requestError{fmt.Sprintf(format, args...)} }

// fail answers err as JSON: 400 for bad input, 503 when the database did
// not answer, 500 otherwise. rs is "error", as the original's replies say.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	var re requestError
	switch {
	case errors.As(err, &re):
		code = http.StatusBadRequest
	case isUnavailable(err):
		code = http.StatusServiceUnavailable
		err = fmt.Errorf("the database is not available, try again shortly: %w", err)
	}
	s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "status", code, "error", err)
	writeJSON(w, code, map[string]string{"rs": "error", "error": err.Error()})
}

func isUnavailable(err error) bool {
	var ne net.Error
	return mongo.IsTimeout(err) || mongo.IsNetworkError(err) || errors.As(err, &ne) ||
		errors.Is(err, mongo.ErrClientDisconnected) || strings.Contains(err.Error(), "server selection")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// form parses an urlencoded body; fields listed in ints must be whole
// numbers, fields in required must be present.
func form(r *http.Request, required []string, ints ...string) (map[string]string, map[string]int, error) {
	if err := r.ParseForm(); err != nil {
		return nil, nil, badRequest("malformed form body: %v", err)
	}
	for _, f := range required {
		if strings.TrimSpace(r.PostForm.Get(f)) == "" {
			return nil, nil, badRequest("field %q is required", f)
		}
	}
	numbers := map[string]int{}
	for _, f := range ints {
		v := r.PostForm.Get(f)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return nil, nil, badRequest("field %q must be a whole number, got %q", f, v)
		}
		numbers[f] = n
	}
	values := map[string]string{}
	for k := range r.PostForm {
		values[k] = r.PostForm.Get(k)
	}
	return values, numbers, nil
}

// requestInfo is what the original stores about each write's request.
func (s *server) requestInfo(r *http.Request) bson.D {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	return bson.D{
		{Key: "date", Value: time.Now().UTC()},
		{Key: "referer", Value: r.Referer()},
		{Key: "user_agent", Value: r.UserAgent()},
		{Key: "hostname", Value: r.Host},
		{Key: "ip_addr", Value: ip},
	}
}

type highScore struct {
	Name  string `json:"name" bson:"name"`
	Cloud string `json:"cloud" bson:"cloud"`
	Zone  string `json:"zone" bson:"zone"`
	Host  string `json:"host" bson:"host"`
	Score int    `json:"score" bson:"score"`
}

// listHighScores answers the top ten scores, best first.
func (s *server) listHighScores(w http.ResponseWriter, r *http.Request) {
	opts := options.Find().SetSort(bson.D{{Key: "score", Value: -1}}).SetLimit(10)
	cur, err := s.collection("highscore").Find(r.Context(), bson.D{}, opts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	scores := []highScore{}
	if err := cur.All(r.Context(), &scores); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, scores)
}

// addHighScore stores one score from the form fields name, cloud, zone,
// host, score and level.
func (s *server) addHighScore(w http.ResponseWriter, r *http.Request) {
	f, n, err := form(r, []string{"name", "score"}, "score", "level")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	doc := bson.D{
		{Key: "name", Value: f["name"]},
		{Key: "cloud", Value: f["cloud"]},
		{Key: "zone", Value: f["zone"]},
		{Key: "host", Value: f["host"]},
		{Key: "score", Value: n["score"]},
		{Key: "level", Value: n["level"]},
	}
	doc = append(doc, s.requestInfo(r)...)
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	if _, err := s.collection("highscore").InsertOne(ctx, doc); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": f["name"], "zone": f["zone"], "score": n["score"], "level": n["level"], "rs": "success"})
}

// newUser starts a player's statistics and answers their id.
func (s *server) newUser(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	res, err := s.collection("userstats").InsertOne(ctx, bson.D{{Key: "date", Value: time.Now().UTC()}})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, _ := res.InsertedID.(bson.ObjectID)
	writeJSON(w, http.StatusOK, id.Hex())
}

// updateUserStats records a player's progress and counts the updates.
func (s *server) updateUserStats(w http.ResponseWriter, r *http.Request) {
	f, n, err := form(r, []string{"userId"}, "score", "level", "lives", "elapsedTime")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := bson.ObjectIDFromHex(strings.TrimSpace(f["userId"]))
	if err != nil {
		s.fail(w, r, badRequest("userId %q is not an id from GET /user/id", f["userId"]))
		return
	}
	set := bson.D{
		{Key: "cloud", Value: f["cloud"]}, {Key: "zone", Value: f["zone"]}, {Key: "host", Value: f["host"]},
		{Key: "score", Value: n["score"]}, {Key: "level", Value: n["level"]},
		{Key: "lives", Value: n["lives"]}, {Key: "elapsedTime", Value: n["elapsedTime"]},
	}
	set = append(set, s.requestInfo(r)...)
	update := bson.D{{Key: "$set", Value: set}, {Key: "$inc", Value: bson.D{{Key: "updateCounter", Value: 1}}}}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	res, err := s.collection("userstats").UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, update)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if res.MatchedCount == 0 {
		writeJSON(w, http.StatusNotFound, map[string]string{"rs": "error", "error": "no user " + id.Hex() + ": get one from GET /user/id"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"rs": "success"})
}

type userStat struct {
	Cloud    string `json:"cloud" bson:"cloud"`
	Zone     string `json:"zone" bson:"zone"`
	Host     string `json:"host" bson:"host"`
	Score    int    `json:"score" bson:"score"`
	Level    int    `json:"level" bson:"level"`
	Lives    int    `json:"lives" bson:"lives"`
	Et       int    `json:"et" bson:"elapsedTime"`
	Txncount int    `json:"txncount" bson:"updateCounter"`
}

// userStats answers the statistics of every player with a score, oldest
// first.
func (s *server) userStats(w http.ResponseWriter, r *http.Request) {
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: 1}})
	cur, err := s.collection("userstats").Find(r.Context(), bson.D{{Key: "score", Value: bson.D{{Key: "$exists", Value: true}}}}, opts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	stats := []userStat{}
	if err := cur.All(r.Context(), &stats); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, stats)
}

// locationMetadata answers where this pod runs.
func (s *server) locationMetadata(w http.ResponseWriter, r *http.Request) {
	cloud, zone := s.location(r.Context())
	writeJSON(w, http.StatusOK, map[string]string{"cloud": cloud, "zone": zone, "host": s.host})
}
