package sqliteoutbox

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
)

// ListParked returns up to limit parked rows (all when limit <= 0), in id
// order, as [outbox.PostgresStore.ListParked] does.
func (s *Store) ListParked(ctx context.Context, limit int) ([]outbox.ParkedRow, error) {
	q := fmt.Sprintf(`SELECT id, event_id, stream, event_type, coalesce(park_reason, ''), created_at, parked_at
		FROM %s WHERE parked_at IS NOT NULL ORDER BY id`, s.table)
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("sqliteoutbox: list parked rows: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []outbox.ParkedRow
	for rows.Next() {
		var p outbox.ParkedRow
		var typ string
		var created, parked int64
		if err := rows.Scan(&p.ID, &p.EventID, &p.Stream, &typ, &p.Reason, &created, &parked); err != nil {
			return nil, fmt.Errorf("sqliteoutbox: list parked rows: %w", err)
		}
		p.EventType, p.CreatedAt, p.ParkedAt = event.Type(typ), time.Unix(0, created), time.Unix(0, parked)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqliteoutbox: list parked rows: %w", err)
	}
	return out, nil
}

// Unpark puts the parked rows among ids back in the unpublished set, due
// now with no attempts, wakes this process's relays, and returns the ids
// it unparked, as [outbox.PostgresStore.Unpark] does.
func (s *Store) Unpark(ctx context.Context, ids ...int64) ([]int64, error) {
	done, err := s.parkedIDs(ctx, fmt.Sprintf(`UPDATE %s SET parked_at = NULL, park_reason = NULL, attempts = 0,
		last_error = NULL, next_attempt_at = 0 WHERE id IN (SELECT value FROM json_each(?)) AND parked_at IS NOT NULL
		RETURNING id`, s.table), ids)
	if err != nil {
		return nil, fmt.Errorf("sqliteoutbox: unpark: %w", err)
	}
	if len(done) > 0 {
		s.Notify()
	}
	return done, nil
}

// DropParked deletes the parked rows among ids and returns the ids it
// deleted, as [outbox.PostgresStore.DropParked] does.
func (s *Store) DropParked(ctx context.Context, ids ...int64) ([]int64, error) {
	done, err := s.parkedIDs(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id IN (SELECT value FROM json_each(?))
		AND parked_at IS NOT NULL RETURNING id`, s.table), ids)
	if err != nil {
		return nil, fmt.Errorf("sqliteoutbox: drop parked rows: %w", err)
	}
	return done, nil
}

// parkedIDs runs a statement on ids (a JSON array) in a transaction of
// its own and returns the ids it returned, sorted.
func (s *Store) parkedIDs(ctx context.Context, q string, ids []int64) ([]int64, error) {
	var done []int64
	err := s.inTx(ctx, func(tx *sql.Conn) error {
		rows, err := tx.QueryContext(ctx, q, idList(ids))
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return err
			}
			done = append(done, id)
		}
		return rows.Err()
	})
	slices.Sort(done)
	return done, err
}
