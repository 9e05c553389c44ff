package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// config is the game's environment, named as the original Node.js app names
// it (MONGO_AUTH_MECHANISM is this implementation's addition).
type config struct {
	port          string
	hosts         []string
	mongoPort     string
	user          string
	password      string
	database      string
	replicaSet    string
	useSSL        bool
	validateSSL   bool
	authMechanism string
	nodeName      string
}

func configFromEnv(getenv func(string) string) (config, error) {
	c := config{
		port:          or(getenv("PORT"), "8080"),
		mongoPort:     or(getenv("MY_MONGO_PORT"), "27017"),
		user:          getenv("MONGO_AUTH_USER"),
		password:      getenv("MONGO_AUTH_PWD"),
		database:      or(getenv("MONGO_DATABASE"), "pacman"),
		replicaSet:    getenv("MONGO_REPLICA_SET"),
		useSSL:        getenv("MONGO_USE_SSL") == "true",
		validateSSL:   getenv("MONGO_VALIDATE_SSL") != "false",
		authMechanism: getenv("MONGO_AUTH_MECHANISM"),
		nodeName:      getenv("MY_NODE_NAME"),
	}
	for _, h := range strings.Split(or(getenv("MONGO_SERVICE_HOST"), "localhost"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			c.hosts = append(c.hosts, h)
		}
	}
	if len(c.hosts) == 0 {
		return c, fmt.Errorf("MONGO_SERVICE_HOST names no host")
	}
	return c, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// uri is mongodb://USER:PWD@HOST:PORT,.../DATABASE?options, as the original
// builds it.
func (c config) uri() string {
	var hosts []string
	for _, h := range c.hosts {
		if !strings.Contains(h, ":") {
			h += ":" + c.mongoPort
		}
		hosts = append(hosts, h)
	}
	u := url.URL{Scheme: "mongodb", Host: strings.Join(hosts, ","), Path: "/" + c.database}
	if c.user != "" {
		u.User = url.UserPassword(c.user, c.password)
	}
	q := url.Values{}
	if c.replicaSet != "" {
		q.Set("replicaSet", c.replicaSet)
	}
	if c.authMechanism != "" {
		q.Set("authMechanism", c.authMechanism)
	}
	if c.useSSL {
		q.Set("tls", "true")
		if !c.validateSSL {
			q.Set("tlsInsecure", "true")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// clientOptions fail a request fast while the database is away (the driver
// keeps reconnecting in the background, so the game recovers by itself when
// it comes back) and read from secondaries when there are any.
func (c config) clientOptions() *options.ClientOptions {
	return options.Client().ApplyURI(c.uri()).
		SetReadPreference(readpref.SecondaryPreferred()).
		SetServerSelectionTimeout(5 * time.Second).
		SetConnectTimeout(5 * time.Second)
}
