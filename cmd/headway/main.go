// Command headway is the operator command line of headway's Redis streams
// and outbox.
//
// Usage:
//
//	headway <command> [flags] [arguments]
//
// The commands:
//
//	status          length, groups, lag, pending, consumers and dead letters of catalog streams
//	dlq list        list dead-lettered entries with reason, source, deliveries and error
//	dlq show ID     show one dead-lettered entry with all its fields
//	dlq redrive     append dead-lettered entries back to their source stream
//	outbox parked   list parked outbox rows: rows the relay can never append
//	outbox unpark   put parked outbox rows back for the relay, after a fix
//	outbox drop     delete parked outbox rows: their events are never appended
//	catalog export  print the event catalog as Markdown or JSON
//	catalog check   check that a consumer's handler types are emitted on its stream
//
// Every command has --help. The commands that talk to Redis take
// --redis-url (default $REDIS_URL, else redis://127.0.0.1:6379/0),
// --cluster, --prefix (a key prefix before events:{name}), --timeout and
// --catalog; the outbox commands talk to PostgreSQL instead, with
// --database-url (default $DATABASE_URL), --table and --timeout. Results
// go to stdout as aligned tables, or as JSON with --json. docs/cli.md has
// examples.
//
// Exit status: 0 success; 1 operational failure (Redis unreachable, entry
// not found, check failed, redrive interrupted); 2 usage error (unknown
// command or flag, bad or missing argument).
//
// SIGINT and SIGTERM stop a command between Redis calls: a redrive stops
// after the entry it is moving and reports what it moved.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/cmd/headway/internal/cli"
)

// quiet drops go-redis's own log lines (dial retries and the like): the
// command reports the error that matters on stderr itself.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func main() {
	redis.SetLogger(quiet{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
