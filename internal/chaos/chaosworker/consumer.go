package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/chaos"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// errTransient is the handler's made-up failure after its write: not an
// SQL error, so the transaction is still usable and the consumer retries.
var errTransient = errors.New("chaos: transient failure after the write")

// newConsumer applies BET_SETTLED_CONFIRMED through the PostgreSQL inbox:
// the handler's writes and the inbox mark commit together.
func newConsumer(pool *pgxpool.Pool, rdb redis.UniversalClient, o options, wm *readiness.Watermark, log *slog.Logger) (*consumer.Consumer, error) {
	inbox, err := dedup.NewPostgres(dedup.PostgresConfig{Pool: pool})
	if err != nil {
		return nil, err
	}
	return consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: event.StreamKey(platform.StreamWallet), Group: platform.ServiceRolling,
		Consumer: o.name, Dedup: inbox, Block: 200 * time.Millisecond, HandlerTimeout: time.Second,
		Retry:       consumer.RetryPolicy{Attempts: 3, Backoff: backoff.Exponential{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}},
		ReclaimIdle: 3 * time.Second, ReclaimInterval: time.Second, InfoInterval: time.Second, DrainTimeout: time.Second,
		Handlers:  map[event.Type]consumer.Handler{platform.BetSettledConfirmed: apply(o.name, o.transient, o.sqlFaults)},
		Watermark: wm, Logger: log})
}

// apply is the handler. In the inbox transaction it records the effect in
// chaos_applied (no unique key: an event applied twice shows as two rows)
// and adds the event's amount to its account's balance. Then, on the
// first attempt of each delivery of the events chaos.SQLFault picks, it
// runs a statement that fails (the transaction is then aborted, SQLSTATE
// 25P02 for every later statement, unless the consumer rolls back to a
// savepoint); and, on a fraction transient of all attempts, it fails with
// a non-SQL error after its writes. A consumer that retries inside one
// transaction without undoing the failed attempt's writes applies them
// twice.
func apply(name string, transient, sqlFaults float64) consumer.Handler {
	return func(ctx context.Context, m *consumer.Message) error {
		tx, ok := dedup.Tx(ctx)
		if !ok {
			return consumer.Permanent(errors.New("no inbox transaction"))
		}
		var p struct {
			Account string `json:"account"`
			Amount  int64  `json:"amount"`
		}
		if err := json.Unmarshal(m.Envelope.Payload, &p); err != nil || p.Account == "" {
			return consumer.Permanent(fmt.Errorf("payload without account: %v", err))
		}
		id := m.Envelope.EventID
		if _, err := tx.Exec(ctx, "INSERT INTO chaos_applied (event_id, consumer, attempt, deliveries) VALUES ($1, $2, $3, $4)",
			id, name, m.Attempt, m.Deliveries); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "UPDATE chaos_balances SET cents = cents + $1 WHERE account = $2", p.Amount, p.Account)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return consumer.Permanent(fmt.Errorf("no balance row %q", p.Account))
		}
		if m.Attempt == 1 {
			var stmt string
			switch chaos.SQLFault(id, sqlFaults) {
			case chaos.FaultDivisionByZero:
				stmt = "SELECT 1/0"
			case chaos.FaultCheckViolation:
				stmt = "INSERT INTO chaos_constraint (v) VALUES (-1)"
			}
			if stmt != "" {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("chaos SQL fault: %w", err)
				}
				return consumer.Permanent(fmt.Errorf("chaos: %q did not fail", stmt))
			}
		}
		if transient > 0 && rand.Float64() < transient {
			return errTransient
		}
		return nil
	}
}
