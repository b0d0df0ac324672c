// Package pgtest gives tests a PostgreSQL schema of their own on the real
// server.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// URLEnv names the environment variable that overrides the server URL.
const URLEnv = "HEADWAY_DATABASE_URL"

// DefaultURL is the shared PostgreSQL of the development machines and CI.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DB is a test's own schema.
type DB struct {
	Pool   *pgxpool.Pool
	Schema string
	URL    string // connection URL whose search_path is the schema
}

// New creates a fresh schema, returns a pool whose connections use it as
// their search_path, and drops the schema (CASCADE) when the test ends.
// When the server does not answer the test fails with a message that says
// how to start it; it never skips.
func New(t testing.TB) *DB {
	t.Helper()
	url := os.Getenv(URLEnv)
	if url == "" {
		url = DefaultURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("pgtest: PostgreSQL at %s does not answer (%v). Start it with:\n"+
			"  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"+
			"or point %s at a running server.", url, err, URLEnv)
	}
	defer func() { _ = admin.Close(context.Background()) }()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Logf("pgtest: drop schema %s: %v", schema, err)
			return
		}
		defer func() { _ = c.Close(context.Background()) }()
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	sep := "?"
	for i := range url {
		if url[i] == '?' {
			sep = "&"
		}
	}
	return &DB{Pool: pool, Schema: schema, URL: url + sep + "search_path=" + schema}
}
