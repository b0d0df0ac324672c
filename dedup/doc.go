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
// [RedisStore] takes a short in-flight lease (SET NX with a TTL), runs the
// handler, then records "done" with a long TTL. Its effect is exactly-once
// while the handler succeeds within the lease; a handler whose own writes
// are elsewhere can still run twice if the process dies after the writes
// and before the done mark, so its writes should be idempotent. It also
// implements [Batcher]: a consumer leases a whole read batch with one Lua
// script call and settles it with one more (keys of one scope share a hash
// tag, so this works on a cluster too).
//
// A store that records the key in the same database transaction as the
// handler's writes (an inbox table) makes the effect exactly once; such a
// store passes the same suite.
//
// Every store passes the conformance suite in package deduptest.
package dedup
