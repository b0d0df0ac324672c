// Command chaosworker is one process of the chaos run in package
// internal/chaos: a producer writing events through the outbox, a relay,
// or a consumer applying events into PostgreSQL through the inbox. The
// harness starts several, kills them at random and checks the totals.
//
//	chaosworker -role producer -database-url URL -redis ADDR -count N -rate R
//	chaosworker -role relay    -database-url URL -redis ADDR -name relay-1
//	chaosworker -role consumer -database-url URL -redis ADDR -name c1
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/supervisor"
)

func main() {
	role := flag.String("role", "", "producer, relay or consumer")
	dbURL := flag.String("database-url", "", "PostgreSQL URL (its search_path names the run's schema)")
	addr := flag.String("redis", "", "Redis address")
	name := flag.String("name", "", "process name: the consumer name in the group, the application_name")
	count := flag.Int("count", 1000, "producer: events to write")
	rate := flag.Float64("rate", 100, "producer: events per second")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With(slog.String("proc", *name))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *role, *dbURL, *addr, *name, *count, *rate, log); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("worker failed", slog.String("error", err.Error()))
		os.Exit(1)
	}
}

func run(ctx context.Context, role, dbURL, addr, name string, count int, rate float64, log *slog.Logger) error {
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return err
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "chaos-" + name
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, DialTimeout: 500 * time.Millisecond,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: -1})
	defer func() { _ = rdb.Close() }()
	switch role {
	case "producer":
		return produce(ctx, pool, count, rate, log)
	case "relay", "consumer":
		tree, err := supervisor.New(supervisor.Config{Name: name, Logger: log, FailureBackoff: 500 * time.Millisecond,
			FailureThreshold: 20})
		if err != nil {
			return err
		}
		var svc interface {
			Serve(context.Context) error
		}
		if role == "relay" {
			svc, err = outbox.NewRelay(outbox.RelayConfig{Pool: pool, Client: rdb, PollInterval: 200 * time.Millisecond,
				RetryInitial: 100 * time.Millisecond, RetryMax: time.Second, FailureLimit: 20, Retention: -1, Logger: log})
		} else {
			svc, err = newConsumer(ctx, pool, rdb, name, log)
		}
		if err != nil {
			return err
		}
		if err := tree.Add(role, svc); err != nil {
			return err
		}
		log.Info("started", slog.String("role", role))
		return tree.Serve(ctx)
	}
	return fmt.Errorf("unknown role %q", role)
}

// produce writes count orders, each with its event in one transaction,
// at rate per second. A commit whose outcome is unknown (the connection
// was terminated) is retried; the order's primary key tells whether the
// first try committed.
func produce(ctx context.Context, pool *pgxpool.Pool, count int, rate float64, log *slog.Logger) error {
	w, err := outbox.NewWriter(outbox.WriterConfig{Logger: log})
	if err != nil {
		return err
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	retries := 0
	for i := 0; i < count; {
		if err := ctx.Err(); err != nil {
			return err
		}
		id := fmt.Sprintf("ev-%06d", i)
		payload, _ := json.Marshal(map[string]any{"order": id})
		env := event.Envelope{EventID: id, EventType: event.BetSettledConfirmed, SchemaVersion: 2, BrandID: 3,
			OccurredAt: time.Now().UTC(), AggregateID: fmt.Sprintf("bet-%d", i%50), Payload: payload}
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO chaos_orders (id) VALUES ($1)", id); err != nil {
				return err
			}
			return w.Write(ctx, tx, 3, env)
		})
		var pgErr *pgconn.PgError
		if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "23505") { // unique_violation: the first try committed
			retries++
			time.Sleep(50 * time.Millisecond)
			continue
		}
		i++
		<-tick.C
	}
	log.Info("produced", slog.Int("count", count), slog.Int("retries", retries))
	return nil
}

// newConsumer applies BET_SETTLED_CONFIRMED into chaos_applied through the
// PostgreSQL inbox: the row and the inbox mark commit together.
func newConsumer(ctx context.Context, pool *pgxpool.Pool, rdb redis.UniversalClient, name string, log *slog.Logger) (*consumer.Consumer, error) {
	inbox, err := dedup.NewPostgres(pool, dedup.PostgresConfig{})
	if err != nil {
		return nil, err
	}
	return consumer.New(consumer.Config{Client: rdb, Stream: event.StreamKey(event.StreamWallet), Group: event.ServiceRolling,
		Consumer: name, Dedup: inbox, Block: 200 * time.Millisecond, HandlerTimeout: time.Second,
		ReclaimIdle: 3 * time.Second, ReclaimInterval: time.Second, InfoInterval: time.Second, DrainTimeout: time.Second,
		Handlers: map[event.Type]consumer.Handler{
			event.BetSettledConfirmed: func(ctx context.Context, m *consumer.Message) error {
				tx, ok := dedup.Tx(ctx)
				if !ok {
					return consumer.Permanent(errors.New("no inbox transaction"))
				}
				_, err := tx.Exec(ctx, "INSERT INTO chaos_applied (event_id, consumer) VALUES ($1, $2)", m.Envelope.EventID, name)
				return err
			},
		},
		Logger: log})
}
