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
//	store, err := sqliteoutbox.New(sqliteoutbox.Config{DB: db})
//	err = store.Migrate(ctx) // once at start-up; idempotent
//	w := sqliteoutbox.NewWriter(outboxWriter, store)
//	tx, err := db.BeginTx(ctx, nil)
//	// … business writes in tx …
//	err = w.Write(ctx, tx, bet.BrandID, env)
//	err = tx.Commit()
//	store.Notify() // wake the relay now rather than at its next poll
//
// # How it differs from PostgreSQL
//
//   - SQLite has one writer at a time. A claim leases its rows in one
//     short statement (lease_token, lease_until; Config.LeaseTTL) and
//     finishes them in another, so the write lock is never held while the
//     relay talks to Redis: a hung Redis delays no business transaction.
//     Several relays on one file are safe; a relay that dies leaves its
//     rows leased until the lease runs out, and they are appended again
//     (at least once, as with PostgreSQL).
//   - Business transactions share the one write lock. Open begins them
//     with BEGIN IMMEDIATE; a database opened otherwise must do the same,
//     or a transaction that reads before it writes can fail with
//     SQLITE_BUSY when another commits in between.
//   - There is no LISTEN/NOTIFY across processes: [Store.Notify] wakes the
//     relays of this process, and relays in other processes find rows at
//     their poll interval.
//   - The database enforces brand_id = owner_brand_id with a CHECK, as in
//     PostgreSQL. SQLite cannot add a foreign key to an existing table, so
//     the owner-table pattern of package outbox needs a trigger here.
//   - Times are stored as Unix nanoseconds by the process's clock.
//
// Parked rows behave as in PostgreSQL (the outboxtest conformance suite
// runs on both): [Store.ListParked], [Store.Unpark] and [Store.DropParked]
// resolve them.
package sqliteoutbox
