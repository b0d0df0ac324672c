// Package consumer is headway's Redis Streams consumer-group runtime: it
// reads one stream as one member of a group and applies every entry exactly
// once in effect, or dead-letters it with a reason. Nothing is dropped and
// nothing blocks the stream.
//
// # Use
//
//	c, err := consumer.New(consumer.Config{
//		Client:   rdb,                                    // redis.UniversalClient: node or cluster
//		Catalog:  platform.Catalog(),                     // the streams and their event types
//		Stream:   event.StreamKey(platform.StreamWallet), // "events:{wallet}"
//		Group:    platform.ServiceRolling,                // "rolling_service"
//		Handlers: map[event.Type]consumer.Handler{
//			platform.BetSettledConfirmed:    settle,
//			platform.BetRolledBackConfirmed: rollBack,
//		},
//		Guard:      guard,       // brandguard, mode from MULTI_BRAND_ENFORCEMENT
//		Dedup:      store,       // dedup.NewRedis(…) or an inbox store
//		Registerer: reg,
//		Logger:     log,
//	})
//	tree.Add("rolling", c)       // a suture.Service; registers its loop with the tree's probes
//
// New refuses handlers for types the catalog does not list as emitted on
// the stream (reserved, retired, unknown): a consumer cannot wait for an
// event nobody produces.
//
// # The pipeline of an entry
//
// Entries are read in batches (XREADGROUP COUNT BatchSize). Each entry is
// decoded and judged by brandguard, checked against dedup, dispatched to the
// handler of its event type through Config.Middleware, and acknowledged —
// one XACK for the whole batch. Batches are pipelined: while one runs its
// handlers, the batch before it may still be settling dedup and
// acknowledging, the batch read after it is prepared (decoded, judged,
// claimed in dedup) and the next one is read; handlers still run batch
// after batch, in the order the batches were read, and acknowledgements
// follow in the same order. The outcomes, each counted in
// headway_consumer_entries_total{outcome}:
//
//   - applied: the handler returned nil; acknowledged;
//   - duplicate: dedup says the event was done before; acknowledged, the
//     handler does not run;
//   - unhandled: no handler for the type (DEPOSIT_APPROVED for the rolling
//     consumer); acknowledged;
//   - ignored: brandguard ignores a retired type; acknowledged;
//   - dead_lettered: brandguard rejected it (malformed, legacy
//     schema_version 1, missing or unparseable brand, too large), the
//     handler returned a [Permanent] error or brandguard.ErrBrandMismatch,
//     or the handler failed on the MaxDeliveries-th delivery. The entry is
//     appended to the dead-letter stream with its original fields and
//     dlq_reason, dlq_error, dlq_stream, dlq_group, dlq_consumer, dlq_id,
//     dlq_deliveries and dlq_at (an entry over the size limit without its
//     fields over 4 KiB, and dlq_truncated), and acknowledged by the same
//     script, which acknowledges only an entry whose append succeeded;
//   - retry_later: the handler failed after its in-process retries; the
//     entry stays pending and comes back after ReclaimIdle;
//   - deferred: an earlier entry of the same aggregate is pending (order),
//     another worker holds the dedup lease, or the consumer is shutting
//     down; the entry stays pending, and so do the later entries of its
//     aggregate;
//   - lost_to_trim: the entry was trimmed from the stream while pending;
//     acknowledged, counted in headway_consumer_lost_to_trim_total and
//     logged as an error: that is data loss by retention.
//
// A legacy schema_version 1 entry is also surfaced on the watermark for
// AlertWindow, as AlertPolicy says: a notice on /status and under
// "notice/loop/<name>" in /ready?full=1 while the consumer stays ready
// (AlertNotice, the default), or a hold that makes it not ready
// (AlertHold).
//
// # Order and concurrency
//
// Up to Concurrency handlers run at once. Entries of one aggregate_id run
// one after another in stream order; when one of them stays pending (a
// failure, a busy dedup lease, shutdown), the later ones wait (deferred)
// and run after it when the pending entries are reclaimed. Order holds within one consumer; Redis
// hands entries of a group to its consumers without regard to aggregates,
// so across several consumers of a group only the dedup and each handler's
// own checks keep effects consistent (docs/adr/ADR-010-consumer-semantics.md).
//
// # The PostgreSQL inbox: one transaction per lane
//
// With a Dedup store that is a dedup.TxBatcher (the PostgreSQL inbox), a
// lane's entries are applied in one transaction, each handler in a
// savepoint of its own, with one commit (at most 63 entries a
// transaction): a failing entry rolls back alone and its neighbours
// commit. An entry behind a failed entry of its aggregate does not run in
// the transaction; it runs once that one's retries succeeded. Retries run
// in a transaction per attempt. A handler that waits longer than the
// store's LockWait for a row another transaction holds is run again alone
// after the entries before it committed. Config.BatchHandlers apply a run
// of entries of one type with one call, set-based, in the transaction;
// Config.TxPerEvent gives every attempt a transaction of its own
// (docs/adr/ADR-019-inbox-batch-transactions.md).
//
// # Redelivery and reclaim
//
// On start the consumer first re-reads its own pending entries (ID 0), then
// new ones. Every ReclaimInterval it claims entries idle for ReclaimIdle
// (XAUTOCLAIM) — those of dead consumers and its own deferred or failed
// ones. Entries held by this consumer (the batch running and the batches
// read behind it) are re-claimed to it every ReclaimIdle/3 (XCLAIM
// JUSTID, by a script that takes only entries still pending for this
// consumer and still in the stream), so a slow batch is never claimed by
// another consumer and run twice at once. An entry another consumer took
// while this process could not refresh it (paused longer than ReclaimIdle)
// is never taken back: it is logged and counted in
// headway_consumer_taken_in_flight_total. An entry trimmed from the stream
// while held stays pending: acknowledged if its handler applies it, else
// counted in headway_consumer_lost_to_trim_total when a reclaim finds it
// deleted. Consumers of the group idle for ConsumerIdleTimeout with nothing
// pending are removed, by a script that checks both again as it deletes.
//
// When the group or stream vanishes (NOGROUP: deleted, or Redis restarted
// without persistence) the consumer recreates the group at StartID, counts
// it in headway_consumer_group_recreated_total, logs an error and
// surfaces it for AlertWindow as AlertPolicy says. So it does when Serve,
// started again by its supervisor, finds missing a group this Consumer had
// seen (Redis came back empty while it was down), instead of taking it for
// a first start. A stream whose entries-added (XINFO STREAM, Redis 7) falls
// below an earlier reading lost entries it had (created again, or a
// failover to a replica without the newest): counted in
// headway_consumer_stream_reset_total, logged and surfaced the same way
// (ADR-021).
//
// # Health
//
// The consumer's [readiness.Watermark] gets a heartbeat every iteration,
// a failure for every failed read, and after every batch:
//
//   - a failed work item ([readiness.Watermark.FailWork]) for each entry
//     its handler (or its dedup store) failed on — once per entry, however
//     often it is retried;
//   - progress (the newest acknowledged entry ID) when the batch resolved
//     an entry other than by a handler's failure: applied, duplicate,
//     ignored, unhandled, or dead-lettered as bad input. An entry
//     dead-lettered because its handler failed (handler_permanent,
//     max_deliveries) is no progress: a consumer whose every entry fails
//     turns failing at the watermark's failure bound, whether the entries
//     wait for a retry or end in the dead-letter stream.
//
// Every InfoInterval it gets the backlog (undelivered + pending, or unknown
// when Redis cannot tell the lag) less the entries this consumer left
// pending for a retry, which it reports as retrying
// ([readiness.Watermark.SetRetrying]): waiting ReclaimIdle for a
// redelivery is no stall, so one entry retrying while others flow, or
// after they stop, leaves the consumer ready with "retrying 1" in its
// reason. An entry waiting longer than ReclaimIdle + 2×ReclaimInterval
// counts as backlog again (its redelivery is overdue). A consumer with a
// backlog that does not move is stalled (not ready); an idle one with no
// backlog is ready however long it waits.
// Every Redis call of the loop has a deadline (a blocking read's is Block
// plus 5s), and the loop beats while it waits for its batches or backs
// off, so a Redis that hangs makes it stalled or failing, never wedged.
//
// # Shutdown
//
// Cancelling Serve's context stops reading; handlers in flight get
// DrainTimeout to finish; what finished is acknowledged; the rest stays
// pending for the group. Serve returns after that. A blocked read cannot be
// interrupted by go-redis, so Block bounds how long the stop takes to
// begin.
//
// # Memory
//
// Handlers run for at most one batch (BatchSize entries) at a time; with
// the pipeline, at most three batches are in memory. An entry over the
// codec's size limit is dead-lettered at once, before anything else of its
// batch runs.
//
// Draining a backlog allocates about 1 KB per entry, most of it in
// go-redis's parsing of the read reply. On a machine where the consumer
// competes for CPU, garbage collection is a large share of its cost; a
// higher GOGC (or a GOMEMLIMIT with GOGC raised or off) trades memory for
// throughput. The package never sets them: that is the program's choice
// (docs/performance.md has figures).
package consumer
