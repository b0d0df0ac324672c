package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/thejerf/suture/v4"
	"go.opentelemetry.io/otel/propagation"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/retention"
	"github.com/headwaylabs/headway/service"
	"github.com/headwaylabs/headway/supervisor"
)

// serve builds the demo and runs it until ctx ends.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	started := time.Now()
	faulty := func() bool { return cfg.faultFor == 0 || time.Since(started) < cfg.faultFor }
	drain := cfg.drainDelay
	if drain == 0 {
		drain = -1 // the flag's 0 is none; service.Config's 0 is its default
	}
	svc, err := service.New(service.Config{Name: cfg.title, Addr: cfg.listen, Logger: log, DrainDelay: drain,
		Supervisor: supervisor.Config{Name: "demo", FailureBackoff: 5 * time.Second}})
	if err != nil {
		return err
	}
	defer func() { _ = svc.Close() }() // when Run is never reached
	add := func(name string, w suture.Service) error {
		switch {
		case slices.Contains(cfg.crash, name):
			w = &failing{Service: w, active: faulty, err: errors.New("injected crash (-fault-crash)")}
		case name == cfg.stop:
			w = &failing{Service: w, active: func() bool { return true },
				err: fmt.Errorf("injected permanent failure (-fault-stop): %w", suture.ErrDoNotRestart)}
		}
		return svc.Add(name, w) // registers the worker's check and, for a loop, its watermark's
	}

	rdb, closeRedis, err := openRedis(cfg, log)
	if err != nil {
		return err
	}
	defer closeRedis()
	tp, stopTracing, err := openTracing(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = stopTracing(sctx) // flushes the spans still batched
	}()
	var prop propagation.TextMapPropagator
	if tp != nil {
		prop = propagation.TraceContext{}
	}
	catalog := platform.Catalog()
	guard, err := brandguard.New(brandguard.Config{Mode: cfg.mode, Catalog: catalog, Registerer: svc.Registerer(), Logger: log})
	if err != nil {
		return err
	}
	writer, err := outbox.NewWriter(outbox.WriterConfig{Catalog: catalog, Guard: guard, Propagator: prop, Registerer: svc.Registerer(), Logger: log})
	if err != nil {
		return err
	}
	if err := svc.AddWriter(writer); err != nil {
		return err
	}
	wallet, err := openWallet(ctx, cfg, writer, log)
	if err != nil {
		return err
	}
	defer wallet.close()
	watermark := func(name string) (*readiness.Watermark, error) {
		return readiness.NewWatermark(readiness.WatermarkConfig{Name: name, StallWindow: cfg.stallWindow})
	}

	// The wallet producer, the relay and the observer of the outbox backlog.
	dir := newDirectory(cfg.players)
	prodWM, err := watermark("wallet-producer")
	if err != nil {
		return err
	}
	producer := newProducer(wallet, dir, rdb, cfg, prodWM, log)
	if tp != nil {
		producer.tracer = tp.Tracer("github.com/headwaylabs/headway/cmd/demo-consumer")
	}
	if err := add("wallet-producer", producer); err != nil {
		return err
	}
	relayWM, err := watermark("relay/" + wallet.store().Table())
	if err != nil {
		return err
	}
	relay, err := outbox.NewRelay(outbox.RelayConfig{Store: wallet.store(), Client: rdb, PollInterval: 250 * time.Millisecond,
		InfoInterval: time.Second, Watermark: relayWM, TracerProvider: tp, Registerer: svc.Registerer(), Logger: log})
	if err != nil {
		return err
	}
	if err := add("relay", relay); err != nil {
		return err
	}
	// The observer measures the outbox backlog whether the relay runs or
	// not (-fault-crash relay), so HeadwayOutboxBacklogTooOld can fire.
	observer, err := outbox.NewObserver(outbox.ObserverConfig{Store: wallet.store(), Interval: 2 * time.Second,
		Registerer: svc.Registerer(), Logger: log})
	if err != nil {
		return err
	}
	if err := add("outbox-observer", observer); err != nil {
		return err
	}

	// The two consumers of the wallet stream, each with its projection.
	store, err := dedup.NewRedis(dedup.RedisConfig{Client: rdb})
	if err != nil {
		return err
	}
	projections := map[string]*projection{}
	for _, name := range consumerNames {
		group := map[string]string{"rolling": platform.ServiceRolling, "promotion": platform.ServicePromotion}[name]
		p := newProjection(group, dir, name == "promotion", cfg.fail, cfg.hang == name)
		handlers := p.handlers()
		if cfg.slow == name {
			for t, h := range handlers {
				handlers[t] = slowed(h, cfg.slowBy)
			}
		}
		projections[name] = p
		wm, err := watermark(group + "@" + event.StreamKey(platform.StreamWallet))
		if err != nil {
			return err
		}
		c, err := consumer.New(consumer.Config{Client: rdb, Stream: event.StreamKey(platform.StreamWallet), Catalog: catalog,
			Group: group, Consumer: cfg.consumer, Handlers: handlers, Guard: guard, Dedup: store,
			HandlerTimeout: 5 * time.Second, ReclaimIdle: cfg.reclaimIdle, Block: 500 * time.Millisecond, BatchSize: cfg.batchSize,
			AlertPolicy: cfg.alertPolicy, AlertWindow: cfg.alertWindow,
			Watermark: wm, TracerProvider: tp, Registerer: svc.Registerer(), Logger: log})
		if err != nil {
			return err
		}
		if err := add(name, c); err != nil {
			return err
		}
	}

	// Retention: the wallet stream trimmed to what both groups have
	// acknowledged, its dead letters by age; one job each.
	if _, err := svc.AddRetention(retention.KeeperConfig{Client: rdb, Interval: cfg.trimEvery, Streams: []retention.Stream{
		{Key: event.StreamKey(platform.StreamWallet), Policy: retention.Policy{MinAge: cfg.keepFor, MaxLength: cfg.maxLength}},
		{Key: event.DeadLetterKey(platform.StreamWallet), Policy: retention.Policy{DeadLetter: true, MinAge: cfg.keepDeadFor, MaxLength: cfg.maxDeadLetters}},
	}}); err != nil {
		return err
	}

	// The reconciliation job.
	if _, err := svc.AddJob(supervisor.JobConfig{Name: "reconcile", Interval: cfg.reconcile, RunAtStart: true,
		Run: func(ctx context.Context) error {
			if cfg.jobHang && faulty() {
				// -fault-job-hang: ignores ctx, as a job stuck in a call
				// without a deadline does, until the fault ends.
				if cfg.faultFor == 0 {
					select {} // for ever: shutdown abandons it after the supervisor's StopTimeout
				}
				time.Sleep(time.Until(started.Add(cfg.faultFor)))
			}
			return reconcile(projections["rolling"], projections["promotion"], cfg.grace, time.Now())
		}}); err != nil {
		return err
	}

	log.Info("demo running", slog.String("http", "http://"+svc.Addr()+"/status"),
		slog.String("mode", cfg.mode.String()), slog.Float64("rate", cfg.rate))
	return svc.Run(ctx)
}

// failing is a worker whose Serve returns err at once while active says
// so. For -fault-crash err is transient, and the supervisor restarts the
// worker, then holds it in backoff, until the fault ends; for -fault-stop
// it wraps suture.ErrDoNotRestart, and the supervisor stops the worker for
// good (service status stopped).
type failing struct {
	suture.Service
	active func() bool
	err    error
}

func (c *failing) Serve(ctx context.Context) error {
	if c.active() {
		return c.err
	}
	return c.Service.Serve(ctx)
}

// slowed returns h made to take at least d (-fault-slow), as a handler
// waiting on a slow dependency does; it gives up when ctx ends.
func slowed(h consumer.Handler, d time.Duration) consumer.Handler {
	return func(ctx context.Context, m *consumer.Message) error {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
		return h(ctx, m)
	}
}

// Watermark passes the worker's watermark on, so the supervisor parks it
// during backoff and once it is stopped.
func (c *failing) Watermark() *readiness.Watermark {
	if r, ok := c.Service.(supervisor.WatermarkReporter); ok {
		return r.Watermark()
	}
	return nil
}

// redisAddr names where rdb connects: a node's address, the Sentinel
// client's master, or a cluster's seed nodes.
func redisAddr(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().Addr // "FailoverClient" for a Sentinel client
	case *redis.ClusterClient:
		return "cluster " + strings.Join(c.Options().Addrs, ",")
	}
	return "?"
}

// openRedis connects to REDIS_URL or starts an embedded Redis.
func openRedis(cfg config, log *slog.Logger) (redis.UniversalClient, func(), error) {
	if cfg.redisURL != "" {
		rdb, err := service.OpenRedis(cfg.redisURL) // never repeats the URL, which may carry a password
		if err != nil {
			return nil, nil, err
		}
		log.Info("using Redis", slog.String("addr", redisAddr(rdb)))
		return rdb, func() { _ = rdb.Close() }, nil
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		return nil, nil, fmt.Errorf("embedded Redis: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	log.Info("using embedded Redis (miniredis)", slog.String("addr", mr.Addr()))
	return rdb, func() { _ = rdb.Close(); mr.Close() }, nil
}

// openWallet opens the wallet database: DATABASE_URL, or an embedded
// SQLite file.
func openWallet(ctx context.Context, cfg config, w *outbox.Writer, log *slog.Logger) (walletDB, error) {
	if cfg.databaseURL != "" {
		db, err := openPGWallet(ctx, cfg.databaseURL, w)
		if err != nil {
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		log.Info("using PostgreSQL for the wallet and its outbox")
		return db, nil
	}
	dir := cfg.dataDir
	cleanup := func() {}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "headway-demo-")
		if err != nil {
			return nil, err
		}
		dir, cleanup = tmp, func() { _ = os.RemoveAll(tmp) }
	}
	path := filepath.Join(dir, "wallet.db")
	db, err := openSQLiteWallet(ctx, path, w)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("embedded SQLite %s: %w", path, err)
	}
	log.Info("using embedded SQLite for the wallet and its outbox", slog.String("path", path))
	return &withCleanup{walletDB: db, cleanup: cleanup}, nil
}

type withCleanup struct {
	walletDB
	cleanup func()
}

func (w *withCleanup) close() { w.walletDB.close(); w.cleanup() }
