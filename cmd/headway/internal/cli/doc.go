// Package cli is the operator command line of headway, run by cmd/headway:
// the status of streams, groups and consumers; listing, showing and
// redriving dead-lettered entries; listing, unparking and dropping parked
// outbox rows; exporting and checking the event catalog. docs/cli.md shows
// its use.
//
// [Run] is the whole program: it parses the arguments with one
// flag.FlagSet per command, writes results to stdout (aligned tables, or
// JSON with --json) and diagnostics to stderr, and returns the exit code:
// [ExitOK] (0), [ExitFailure] (1: Redis unreachable, an entry not found, a
// failed check) or [ExitUsage] (2: unknown command or flag, bad or missing
// argument). Tests call it in process.
//
// # Redis
//
// The commands that read Redis take --redis-url (default $REDIS_URL, else
// [DefaultRedisURL]), parsed with redis.ParseURL (redis.ParseClusterURL with
// --cluster), and --prefix, a key prefix put before every stream key. The
// client honours context deadlines (ContextTimeoutEnabled), and --timeout
// bounds each call. Streams come from the catalog: platform.Catalog(), or a
// JSON export of another catalog given with --catalog.
//
// # Outbox
//
// The outbox commands read --database-url (default $DATABASE_URL) and
// --table, and call the outbox package's [outbox.PostgresStore.ListParked],
// [outbox.PostgresStore.Unpark] and [outbox.PostgresStore.DropParked]: the
// SQL lives with the schema it reads. --timeout bounds each call; messages
// never repeat the URL.
//
// # Redrive
//
// dlq list, show and redrive read dead letters with [deadletter.Parse], and
// redrive moves one at a time with [deadletter.Redrive]: one Lua script
// call appends its original fields to the source stream and deletes it
// from the dead-letter stream, both or neither, so a redrive killed at any
// point has moved each entry entirely or not at all, and two redrives
// running at once, or a go-redis retry of a script that did run, do not
// double it. The stream and its dead-letter stream share a hash tag
// ("events:{wallet}", "events:{wallet}:dlq"), so this works on a cluster
// as well. What stays here is the operator's side: the flags and filters,
// the refusal of entries the consumers would reject again, the output. A scan
// (dlq list, and redrive by --reason, --type or --all) stops at the
// dead-letter stream's last ID as read when it starts, so it never reaches
// the entries that consumers dead-letter again while a redrive runs.
package cli
