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
	cfg := consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: event.StreamKey(platform.StreamWallet), Group: platform.ServiceRolling,
		Consumer: o.name, Dedup: inbox, Block: 200 * time.Millisecond, HandlerTimeout: time.Second,
		Retry:       consumer.RetryPolicy{Attempts: 3, Backoff: backoff.Exponential{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}},
		ReclaimIdle: 3 * time.Second, ReclaimInterval: time.Second, InfoInterval: time.Second, DrainTimeout: time.Second,
		Handlers:  map[event.Type]consumer.Handler{platform.BetSettledConfirmed: apply(o.name, o.transient, o.sqlFaults)},
		Watermark: wm, Logger: log}
	if o.batch {
		cfg.Handlers = nil
		cfg.BatchHandlers = map[event.Type]consumer.BatchHandler{platform.BetSettledConfirmed: applySet(o.name, o.transient, o.sqlFaults)}
	}
	return consumer.New(cfg)
}

// applySet is apply as a BatchHandler: the effects of all its messages
// with one INSERT, the balances with one UPDATE of the sums per account;
// then, on the first attempt, a statement that fails when one of the
// messages is one chaos.SQLFault picks (the call fails, and its messages
// are retried alone), and a transient failure named for a fraction of the
// messages (the call is undone and made again without them).
func applySet(name string, transient, sqlFaults float64) consumer.BatchHandler {
	return func(ctx context.Context, ms []*consumer.Message, errs []error) error {
		tx, ok := dedup.Tx(ctx)
		if !ok {
			return consumer.Permanent(errors.New("no inbox transaction"))
		}
		ids, accounts := make([]string, len(ms)), make([]string, len(ms))
		attempts, deliveries, amounts := make([]int, len(ms)), make([]int64, len(ms)), make([]int64, len(ms))
		var stmt string
		for i, m := range ms {
			var p struct {
				Account string `json:"account"`
				Amount  int64  `json:"amount"`
			}
			if err := json.Unmarshal(m.Envelope.Payload, &p); err != nil || p.Account == "" {
				errs[i] = consumer.Permanent(fmt.Errorf("payload without account: %v", err))
				continue
			}
			ids[i], accounts[i], amounts[i] = m.Envelope.EventID, p.Account, p.Amount
			attempts[i], deliveries[i] = m.Attempt, m.Deliveries
			if m.Attempt == 1 {
				switch chaos.SQLFault(m.Envelope.EventID, sqlFaults) {
				case chaos.FaultDivisionByZero:
					stmt = "SELECT 1/0"
				case chaos.FaultCheckViolation:
					stmt = "INSERT INTO chaos_constraint (v) VALUES (-1)"
				}
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO chaos_applied (event_id, consumer, attempt, deliveries)
			SELECT e, $2, a, d FROM unnest($1::text[], $3::int[], $4::bigint[]) AS k(e, a, d) WHERE e <> ''`,
			ids, name, attempts, deliveries); err != nil {
			return err
		}
		// One UPDATE joins each balance row with one source row only: sum
		// per account first.
		if _, err := tx.Exec(ctx, `UPDATE chaos_balances b SET cents = b.cents + s.total
			FROM (SELECT a, sum(c) AS total FROM unnest($1::text[], $2::bigint[]) AS k(a, c) WHERE a <> '' GROUP BY a) s
			WHERE b.account = s.a`, accounts, amounts); err != nil {
			return err
		}
		if stmt != "" {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("chaos SQL fault: %w", err)
			}
			return consumer.Permanent(fmt.Errorf("chaos: %q did not fail", stmt))
		}
		for i := range ms {
			if errs[i] == nil && transient > 0 && rand.Float64() < transient {
				errs[i] = errTransient
			}
		}
		return nil
	}
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
