// Package sqliteoutbox is an embedded outbox store on SQLite (the pure-Go
// driver modernc.org/sqlite), for demos, tests and single-process tools
// that must run without a database server. PostgreSQL
// ([outbox.PostgresStore]) stays the production store.
//
// The same [outbox.Relay] runs on it: give [outbox.RelayConfig] a [Store]
// instead of a pool. The business rows and the outbox rows are written in
// one SQLite transaction with a [Writer], which runs every check of
// [outbox.Writer] (catalog, encoding, owner brand).
//
//	db, err := sqliteoutbox.Open(filepath.Join(dir, "outbox.db"))
//	store, err := sqliteoutbox.New(ctx, db, sqliteoutbox.Config{})
//	w := sqliteoutbox.NewWriter(outboxWriter, store)
//	tx, err := db.BeginTx(ctx, nil)
//	// … business writes in tx …
//	err = w.Write(ctx, tx, bet.BrandID, env)
//	err = tx.Commit()
//	store.Notify() // wake the relay now rather than at its next poll
//
// # How it differs from PostgreSQL
//
//   - SQLite has one writer at a time. [Open] starts every transaction
//     with BEGIN IMMEDIATE, so a relay's claim holds the write lock while
//     it appends its batch to Redis, and writers wait (busy_timeout) for
//     that round trip. Several relays on one file are safe but take turns.
//   - There is no LISTEN/NOTIFY across processes: [Store.Notify] wakes the
//     relays of this process, and relays in other processes find rows at
//     their poll interval.
//   - The database enforces brand_id = owner_brand_id with a CHECK, as in
//     PostgreSQL. SQLite cannot add a foreign key to an existing table, so
//     the owner-table pattern of package outbox needs a trigger here.
//   - Times are stored as Unix nanoseconds by the process's clock.
package sqliteoutbox
