// Package mongocheck reads and writes the lab's database with the MongoDB
// driver, one server at a time (through a port-forward to one pod), so that
// the suite can tell which pod holds which document.
package mongocheck

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Timeout bounds each call to the server.
const Timeout = 10 * time.Second

// Credentials are the lab's database user, as its front end logs in.
type Credentials struct {
	User, Password string
	// Mechanism is the front end's MONGO_AUTH_MECHANISM ("" for the
	// driver's default).
	Mechanism string
	Database  string
}

// Server is a connection to one database server.
type Server struct {
	client *mongo.Client
	db     string
	addr   string
}

// Dial connects to the one server at addr (host:port), never to others it
// may name.
func Dial(ctx context.Context, addr string, c Credentials) (*Server, error) {
	u := url.URL{Scheme: "mongodb", Host: addr, Path: "/" + c.Database}
	q := url.Values{"directConnection": {"true"}}
	if c.User != "" {
		u.User = url.UserPassword(c.User, c.Password)
		if c.Mechanism != "" {
			q.Set("authMechanism", c.Mechanism)
		}
	}
	u.RawQuery = q.Encode()
	client, err := mongo.Connect(options.Client().ApplyURI(u.String()).
		SetServerSelectionTimeout(5 * time.Second).SetConnectTimeout(5 * time.Second).SetTimeout(Timeout))
	if err != nil {
		return nil, err
	}
	s := &Server{client: client, db: c.Database, addr: addr}
	if err := client.Ping(ctx, nil); err != nil {
		s.Close()
		return nil, fmt.Errorf("database at %s: %w", addr, err)
	}
	return s, nil
}

// Close disconnects.
func (s *Server) Close() { _ = s.client.Disconnect(context.Background()) }

// ReplicaSet is the name of the replica set the server belongs to, "" for
// a standalone server.
func (s *Server) ReplicaSet(ctx context.Context) (string, error) {
	var hello bson.M
	if err := s.client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return "", err
	}
	name, _ := hello["setName"].(string)
	return name, nil
}

// Put writes document {_id: id, value: value} into collection, replacing
// one of the same id.
func (s *Server) Put(ctx context.Context, collection, id, value string) error {
	_, err := s.client.Database(s.db).Collection(collection).ReplaceOne(ctx,
		bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "_id", Value: id}, {Key: "value", Value: value}},
		options.Replace().SetUpsert(true))
	return err
}

// ErrNotFound is Get's error for a missing document.
var ErrNotFound = errors.New("no such document")

// Get reads the value Put wrote.
func (s *Server) Get(ctx context.Context, collection, id string) (string, error) {
	var doc struct {
		Value string `bson:"value"`
	}
	err := s.client.Database(s.db).Collection(collection).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", ErrNotFound
	}
	return doc.Value, err
}

// HighScores returns which of names have a document in the game's
// highscore collection on this server.
func (s *Server) HighScores(ctx context.Context, names []string) (map[string]bool, error) {
	cur, err := s.client.Database(s.db).Collection("highscore").Find(ctx, bson.D{{Key: "name", Value: bson.D{{Key: "$in", Value: names}}}})
	if err != nil {
		return nil, err
	}
	var docs []struct {
		Name string `bson:"name"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	found := map[string]bool{}
	for _, d := range docs {
		found[d.Name] = true
	}
	return found, nil
}
