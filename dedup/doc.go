// Package dedup records which events a consumer group has processed, so
// that at-least-once delivery from Redis Streams has an exactly-once effect.
//
// # Model
//
// A [Store] wraps the handler of one event identified by a [Key] (consumer
// group and event_id) and returns an [Outcome]: Processed, Duplicate (done
// before; acknowledge without running the handler), Busy (another worker is
// on it; leave the entry pending) or Failed.
//
// The order of operations is what makes it safe. A key is recorded as done
// only after its handler succeeded; a handler that fails or panics releases
// its claim, so the event runs again on redelivery. (A deduplicator that
// marks first and runs second turns every failed event into a "duplicate"
// on redelivery: it loses it.)
//
// # Stores
//
// [RedisStore] takes a short in-flight lease, runs the handler, then
// records "done" with a long TTL. Its effect is exactly-once while the
// handler succeeds within the lease; a handler whose own writes are
// elsewhere can still run twice if the process dies after the writes and
// before the done mark, so its writes should be idempotent. It also
// implements [Batcher]: a consumer leases a whole read batch with one Lua
// script call and settles it with one more (keys of one scope share a hash
// tag, so this works on a cluster too). Each event key is written once, at
// the claim, and points to a key of its batch, which holds the lease and
// then the done mark for the whole batch (ADR-013).
//
// A store that records the key in the same database transaction as the
// handler's writes (an inbox table) makes the effect exactly once; such a
// store passes the same suite.
//
// Every store passes the conformance suite in package deduptest.
//
// # PostgreSQL inbox
//
// [PostgresStore] is the transactional inbox. Process begins a transaction,
// inserts the event's key into the inbox table (ON CONFLICT DO NOTHING),
// runs the handler and commits; a key that is already there is a
// Duplicate, and a handler that fails or panics rolls the insert back. The
// handler's context carries that transaction: get it with [Tx] and make
// the handler's own writes through it, so they commit together with the
// mark. Writes made elsewhere (another connection, Redis, an HTTP call)
// are not part of it and can happen twice.
//
//	inbox, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: pool}) // table "headway_inbox"
//	if err != nil { ... }
//	if err := inbox.Migrate(ctx); err != nil { ... } // once at start-up; idempotent
//
//	outcome, err := inbox.Process(ctx, key, func(ctx context.Context) error {
//		tx, ok := dedup.Tx(ctx)
//		if !ok {
//			return errors.New("not in a PostgreSQL inbox")
//		}
//		_, err := tx.Exec(ctx, "INSERT INTO orders (event_id, total_cents) VALUES ($1, $2)", key.EventID, total)
//		return err // nil commits the order and the mark; an error rolls back both
//	})
//
// The primary key is the lock: a second Process for an event in flight
// waits until the first commits (Duplicate) or rolls back (it runs), so the
// store never returns Busy. Each Process holds a pool connection while its
// handler runs. Marks are kept until [PostgresStore.Prune] deletes those
// older than a retention that must exceed the longest redelivery delay.
//
// # Many events in one transaction
//
// [PostgresStore] also implements [TxBatcher], which the consumer uses
// (ADR-019). ProcessBatch runs many events' handlers in one transaction
// of at most 63 events, each handler in a savepoint of its own: a failing
// event rolls back alone, its neighbours commit with one WAL flush. The
// marks are written with one statement. A handler that waits longer than
// [PostgresConfig].LockWait for a row another transaction holds is rolled
// back and run again alone once the transaction before it committed, so
// batches never queue behind each other's locks. ProcessSet calls one
// [SetFunc] for many events, which writes them with one statement and
// names the events it cannot apply; the call is undone and made again
// without them.
package dedup
