package outbox

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/headwaylabs/headway/event"
)

// A row the relay can never append — it does not encode, so no retry can
// help — is parked: the relay records parked_at and the reason, counts it
// (headway_outbox_parked_total, headway_outbox_parked_rows) and logs it at
// error, and the row leaves the unpublished set. The methods below let an
// operator, or a service from code, see and resolve parked rows; the CLI's
// "headway outbox parked|unpark|drop" calls them.

// ListParked returns up to limit parked rows (all when limit <= 0), in id
// order.
func (s *PostgresStore) ListParked(ctx context.Context, limit int) ([]ParkedRow, error) {
	q := fmt.Sprintf(`SELECT id, event_id, stream, event_type, coalesce(park_reason, ''), created_at, parked_at
		FROM %s WHERE parked_at IS NOT NULL ORDER BY id`, s.table)
	var args []any
	if limit > 0 {
		q += " LIMIT $1"
		args = append(args, limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox: list parked rows: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ParkedRow, error) {
		var p ParkedRow
		var typ string
		err := r.Scan(&p.ID, &p.EventID, &p.Stream, &typ, &p.Reason, &p.CreatedAt, &p.ParkedAt)
		p.EventType = event.Type(typ)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: list parked rows: %w", err)
	}
	return out, nil
}

// Unpark puts the parked rows among ids back in the unpublished set, due
// now with no attempts, and wakes the relays; it returns the ids it
// unparked (ids that are not parked rows are left alone). Fix the row, or
// deploy a relay that can encode it, first: a row that still does not
// encode is parked again at its next claim.
func (s *PostgresStore) Unpark(ctx context.Context, ids ...int64) ([]int64, error) {
	var done []int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, fmt.Sprintf(`UPDATE %s SET parked_at = NULL, park_reason = NULL, attempts = 0,
			last_error = NULL, next_attempt_at = '-infinity' WHERE id = ANY($1) AND parked_at IS NOT NULL
			RETURNING id`, s.table), ids)
		if err != nil {
			return err
		}
		if done, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return err
		}
		slices.Sort(done)
		if len(done) > 0 {
			_, err = tx.Exec(ctx, "SELECT pg_notify($1, '')", s.table)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: unpark: %w", err)
	}
	return done, nil
}

// DropParked deletes the parked rows among ids — their events are never
// appended — and returns the ids it deleted. Rows that are not parked are
// never deleted.
func (s *PostgresStore) DropParked(ctx context.Context, ids ...int64) ([]int64, error) {
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`DELETE FROM %s WHERE id = ANY($1) AND parked_at IS NOT NULL RETURNING id`,
		s.table), ids)
	if err != nil {
		return nil, fmt.Errorf("outbox: drop parked rows: %w", err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("outbox: drop parked rows: %w", err)
	}
	slices.Sort(done)
	return done, nil
}
