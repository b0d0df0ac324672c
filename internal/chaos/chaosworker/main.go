// Command chaosworker is one process of the chaos run in package
// internal/chaos: a producer writing events through the outbox, a relay,
// or a consumer applying events into PostgreSQL through the inbox. The
// harness starts several, kills them at random, freezes their
// dependencies, polls their /live and checks the totals.
//
//	chaosworker -role producer -database-url URL -redis ADDR -count N -rate R
//	chaosworker -role relay    -database-url URL -redis ADDR -name relay-1 -http ADDR
//	chaosworker -role consumer -database-url URL -redis ADDR -name c1 -http ADDR -transient 0.1 -sql-faults 0.05 [-batch]
//
// Relays and consumers serve GET /live and GET /ready (readiness.Probes)
// on -http; their loop's watermark has the liveness window
// -liveness-window.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/chaos"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/supervisor"
)

type options struct {
	role, dbURL, addr, name, http string
	count                         int
	rate                          float64
	liveness                      time.Duration
	transient, sqlFaults          float64
	batch                         bool
}

func main() {
	var o options
	flag.StringVar(&o.role, "role", "", "producer, relay or consumer")
	flag.StringVar(&o.dbURL, "database-url", "", "PostgreSQL URL (its search_path names the run's schema)")
	flag.StringVar(&o.addr, "redis", "", "Redis address")
	flag.StringVar(&o.name, "name", "", "process name: the consumer name in the group, the application_name")
	flag.StringVar(&o.http, "http", "", "relay, consumer: `address` to serve /live and /ready on (none when empty)")
	flag.IntVar(&o.count, "count", 1000, "producer: events to write")
	flag.Float64Var(&o.rate, "rate", 100, "producer: events per second")
	flag.DurationVar(&o.liveness, "liveness-window", 10*time.Second, "relay, consumer: the loop's liveness window")
	flag.Float64Var(&o.transient, "transient", 0, "consumer: fraction of handler attempts that fail after their write, with a non-SQL error")
	flag.Float64Var(&o.sqlFaults, "sql-faults", 0, "consumer: fraction of events whose handler hits an SQL error after its write, on the first attempt of each delivery")
	flag.BoolVar(&o.batch, "batch", false, "consumer: apply the events with a BatchHandler (set-based statements) instead of a Handler")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With(slog.String("proc", o.name))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("worker failed", slog.String("error", err.Error()))
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	pcfg, err := pgxpool.ParseConfig(o.dbURL)
	if err != nil {
		return err
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "chaos-" + o.name
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb := redis.NewClient(&redis.Options{Addr: o.addr, ContextTimeoutEnabled: true, DialTimeout: 500 * time.Millisecond,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: -1})
	defer func() { _ = rdb.Close() }()
	switch o.role {
	case "producer":
		return produce(ctx, pool, o.count, o.rate, log)
	case "relay", "consumer":
		return serve(ctx, o, pool, rdb, log)
	}
	return fmt.Errorf("unknown role %q", o.role)
}

// serve runs a relay or a consumer in a supervision tree, with its probes
// on o.http. The HTTP server starts first and answers from memory, so
// /live answers whatever Redis and PostgreSQL do.
func serve(ctx context.Context, o options, pool *pgxpool.Pool, rdb redis.UniversalClient, log *slog.Logger) error {
	probes, err := readiness.NewProbes(readiness.ProbesConfig{})
	if err != nil {
		return err
	}
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: o.role + "/" + o.name, LivenessWindow: o.liveness})
	if err != nil {
		return err
	}
	if err := probes.AddLoop(wm); err != nil {
		return err
	}
	if o.http != "" {
		ln, err := net.Listen("tcp", o.http)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("GET /live", probes.LiveHandler())
		mux.Handle("GET /ready", probes.ReadyHandler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer func() { _ = srv.Close() }()
	}
	tree, err := supervisor.New(supervisor.Config{Name: o.name, Logger: log, Probes: probes,
		FailureBackoff: 500 * time.Millisecond, FailureThreshold: 20})
	if err != nil {
		return err
	}
	var svc interface {
		Serve(context.Context) error
	}
	if o.role == "relay" {
		// OpTimeout + PollInterval must stay below the liveness window
		// (NewRelay checks).
		svc, err = outbox.NewRelay(outbox.RelayConfig{Pool: pool, Client: rdb, PollInterval: 200 * time.Millisecond,
			OpTimeout: o.liveness / 3,
			Retry:     backoff.Exponential{Initial: 100 * time.Millisecond, Max: time.Second}, FailureLimit: 20, Retention: -1,
			Watermark: wm, Logger: log})
	} else {
		svc, err = newConsumer(pool, rdb, o, wm, log)
	}
	if err != nil {
		return err
	}
	if err := tree.Add(o.role, svc); err != nil {
		return err
	}
	log.Info("started", slog.String("role", o.role))
	return tree.Serve(ctx)
}

// produce writes count orders, each with its event in one transaction,
// at rate per second. Each event's payload carries the account and the
// amount its handler adds to that account's balance. A commit whose
// outcome is unknown (the connection was terminated) is retried; the
// order's primary key tells whether the first try committed.
func produce(ctx context.Context, pool *pgxpool.Pool, count int, rate float64, log *slog.Logger) error {
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), Logger: log})
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
		payload, _ := json.Marshal(map[string]any{"order": id, "account": chaos.Account(id), "amount": chaos.Amount(id)})
		env := event.Envelope{EventID: id, EventType: platform.BetSettledConfirmed, SchemaVersion: 2, BrandID: 3,
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
