package sqliteoutbox

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
)

// Writer writes outbox rows in the caller's SQLite transaction, after the
// checks of an [outbox.Writer]. It is safe for concurrent use.
type Writer struct {
	w *outbox.Writer
	s *Store
}

// NewWriter returns a Writer that checks with w and inserts into s's
// table.
func NewWriter(w *outbox.Writer, s *Store) *Writer { return &Writer{w: w, s: s} }

// Write writes events owned by a row of brand ownerBrand inside tx, the
// caller's transaction. It refuses them all, writing none, for the
// reasons [outbox.Writer.WriteBatch] gives (errors match the same
// sentinels). The caller commits tx and then calls [Store.Notify].
func (w *Writer) Write(ctx context.Context, tx *sql.Tx, ownerBrand event.BrandID, envs ...event.Envelope) error {
	rows, err := w.w.Prepare(ctx, ownerBrand, envs)
	if err != nil || len(rows) == 0 {
		return err
	}
	stmt, err := tx.PrepareContext(ctx, fmt.Sprintf(`INSERT INTO %s (event_id, stream, event_type, schema_version,
		brand_id, owner_brand_id, aggregate_id, occurred_at, payload, traceparent, tracestate, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), ?)`, w.s.table))
	if err != nil {
		return fmt.Errorf("sqliteoutbox: insert: %w", err)
	}
	defer func() { _ = stmt.Close() }()
	now := w.s.now().UnixNano()
	for i := range rows {
		e := &rows[i].Envelope
		if _, err := stmt.ExecContext(ctx, e.EventID, rows[i].Stream, string(e.EventType), e.SchemaVersion,
			int64(e.BrandID), int64(ownerBrand), e.AggregateID, e.OccurredAt.UnixNano(), string(e.Payload),
			e.TraceParent, e.TraceState, now); err != nil {
			return fmt.Errorf("sqliteoutbox: insert %s: %w", e.EventID, err)
		}
	}
	w.w.Written(rows)
	return nil
}
