// Command demo-consumer runs headway's whole transport path in one
// process, on a machine with nothing installed:
//
//	go run ./cmd/demo-consumer
//
// A wallet producer writes business rows and outbox rows in one
// transaction for players of three brands; the outbox relay appends them
// to the wallet stream; a rolling and a promotion consumer apply the two
// bet events into small projections, with Redis deduplication and
// brandguard; a reconciliation job compares the projections. All of it
// runs in a suture supervision tree, and the HTTP server (default
// 127.0.0.1:8080) serves /live, /ready (?full=1), /metrics and /status.
//
// Redis is embedded (miniredis) unless REDIS_URL is set, and the outbox is
// an embedded SQLite file unless DATABASE_URL names a PostgreSQL database.
// MULTI_BRAND_ENFORCEMENT sets brandguard's mode. Fault flags
// (-fault-legacy, -fault-malformed, -fault-mismatch, -fault-fail,
// -fault-hang, -fault-slow, -fault-hostile, -fault-crash, -fault-stop,
// -fault-producer-violation, -fault-job-hang) make the unhappy paths
// visible. Run with
// -h for every flag. It logs with log/slog, as text on a terminal and as
// JSON otherwise, and shuts down cleanly on SIGINT or SIGTERM.
//
// Exit status: 0 after a clean shutdown, 1 when it could not start or a
// worker stopped the tree, 2 for bad flags or environment.
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv))
}

// run parses the configuration, runs the demo until ctx ends and returns
// the exit status.
func run(ctx context.Context, args []string, lookup func(string) (string, bool)) int {
	cfg, err := parseConfig(args, lookup, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-consumer:", err)
		return 2
	}
	log := newLogger(os.Stderr)
	if err := serve(ctx, cfg, log); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("demo stopped", slog.String("error", err.Error()))
		return 1
	}
	log.Info("demo stopped cleanly")
	return 0
}

// newLogger logs text to a terminal and JSON to anything else.
func newLogger(f *os.File) *slog.Logger {
	if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return slog.New(slog.NewTextHandler(f, nil))
	}
	return slog.New(slog.NewJSONHandler(f, nil))
}
