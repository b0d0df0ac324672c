// Package outbox is the publish side of headway: a transactional writer
// that stores events in an outbox table in the same PostgreSQL transaction
// as the business state, and a relay that appends unpublished rows to their
// Redis streams.
//
// # Schema
//
// [PostgresStore.Migrate] applies the embedded migrations (idempotent, serialised by an
// advisory lock). The outbox table keeps every event with its stream,
// envelope fields, the envelope brand (brand_id) and the owning row's brand
// (owner_brand_id), tied by a CHECK. An owner table makes the database
// enforce "outbox brand equals owning row brand" for every writer, the
// library or not, with a composite foreign key:
//
//	CREATE TABLE wallet_bets (id text PRIMARY KEY, brand_id bigint NOT NULL, …,
//	    UNIQUE (id, brand_id));
//	ALTER TABLE headway_outbox ADD CONSTRAINT outbox_owner_brand
//	    FOREIGN KEY (aggregate_id, owner_brand_id) REFERENCES wallet_bets (id, brand_id);
//
// With the CHECK (brand_id = owner_brand_id), a row whose envelope brand is
// not its bet's brand cannot be inserted. This needs one outbox table per
// owner table (wallet_outbox, as the platform has); an outbox shared by
// several aggregate tables uses a trigger instead.
//
// # Writer
//
//	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
//		if _, err := tx.Exec(ctx, "UPDATE wallet_bets SET settled = true WHERE id = $1", betID); err != nil {
//			return err
//		}
//		return writer.Write(ctx, tx, bet.BrandID, env) // same transaction
//	})
//
// An envelope may leave SchemaVersion zero (the writer writes the current
// version) and EventID empty (the writer sets a new, time-ordered
// [event.NewID]); set EventID yourself when the same event may be written
// again, so that consumers see it once.
//
// [Writer.WriteBatch] checks every event first — it encodes as the relay
// will, within the stream entry size limit (else [ErrEventTooLarge]), its
// type is emitted on a catalog stream, its brand equals the owner's — and
// writes none when one fails. A brand violation is counted and makes
// [Writer.Check] fail for a while, surfacing it to supervision.
//
// # Relay
//
// A [Relay] (a suture.Service) claims unpublished rows from a [Store],
// appends them to their streams in one pipelined round trip and marks them
// published. While the backlog fills whole batches it claims the next
// batch while the current one is appended and marked, and appends it only
// once the current one is marked; a failure gives the next batch back
// unchanged, so the order and delivery guarantees are those of one batch
// at a time. On [PostgresStore] a claim is a transaction that locks its
// rows with FOR UPDATE SKIP LOCKED, and the relay wakes on the writer's
// NOTIFY and polls as a fallback. headway/outbox/sqliteoutbox is an
// embedded store on SQLite for demos and tests without a database server
// (docs/adr/ADR-012-embedded-stores-for-the-demo.md). Delivery to the
// stream is at least once; order guarantees are in
// docs/adr/ADR-011-outbox-relay-order-and-delivery.md. Its watermark's
// position is the last published id and its backlog the unpublished rows.
//
// # Failures
//
// A failed append (Redis refused or did not answer: transient) keeps its
// row with attempts, last_error and a backoff; repeated failure makes the
// relay not ready and, past FailureLimit, Serve returns ErrRelayFailing.
//
// Every call of the relay to PostgreSQL or Redis is bounded by
// RelayConfig.OpTimeout, and the relay heartbeats before each one, so a
// dependency that hangs makes it failing or stalled — not ready — but
// never wedged: liveness never depends on PostgreSQL or Redis (issue #14;
// docs/adr/ADR-014-notes-outbox.md lists each call and its bound).
//
// # Parked rows
//
// A row the relay can never append — it does not encode: over the entry
// size limit, or an envelope that does not validate, written by an older
// version or by hand — is parked rather than retried: Claim.Finish records
// parked_at and the reason ([Outcome].Parked), the row leaves the
// unpublished set (never claimed again, not backlog, not pruned), the
// relay counts it (headway_outbox_parked_total, headway_outbox_parked_rows)
// and logs it at error, and the rows behind it go on at once. The writer
// refuses such events up front, with the relay's codec and limit. An
// operator lists parked rows and unparks (after a fix) or drops them with
// [PostgresStore.ListParked], [PostgresStore.Unpark] and
// [PostgresStore.DropParked], or "headway outbox parked|unpark|drop";
// the alert HeadwayOutboxRowsParked fires while any is left.
// headway/outbox/outboxtest is the conformance suite every [Store] runs.
package outbox
