package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/service"
	"github.com/headwaylabs/headway/status"
	"github.com/headwaylabs/headway/supervisor"
)

// serve builds the demo and runs it until ctx ends.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	started := time.Now()
	faulty := func() bool { return cfg.faultFor == 0 || time.Since(started) < cfg.faultFor }
	add := func(tree *supervisor.Tree, name string, svc suture.Service) error {
		switch {
		case slices.Contains(cfg.crash, name):
			svc = &failing{Service: svc, active: faulty, err: errors.New("injected crash (-fault-crash)")}
		case name == cfg.stop:
			svc = &failing{Service: svc, active: func() bool { return true },
				err: fmt.Errorf("injected permanent failure (-fault-stop): %w", suture.ErrDoNotRestart)}
		}
		return tree.Add(name, svc)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	rdb, closeRedis, err := openRedis(cfg, log)
	if err != nil {
		return err
	}
	defer closeRedis()

	catalog := platform.Catalog()
	guard, err := brandguard.New(brandguard.Config{Mode: cfg.mode, Catalog: catalog, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	writer, err := outbox.NewWriter(outbox.WriterConfig{Catalog: catalog, Guard: guard, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	wallet, err := openWallet(ctx, cfg, writer, log)
	if err != nil {
		return err
	}
	defer wallet.close()

	probes, err := readiness.NewProbes(readiness.ProbesConfig{Registerer: reg})
	if err != nil {
		return err
	}
	tree, err := supervisor.New(supervisor.Config{Name: "demo", Probes: probes, Registerer: reg, Logger: log,
		FailureBackoff: 5 * time.Second})
	if err != nil {
		return err
	}
	if err := probes.AddReadinessCheck("outbox/writer", writer.Check); err != nil {
		return err
	}
	newWM := func(name string) (*readiness.Watermark, error) {
		wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: name, StallWindow: cfg.stallWindow})
		if err == nil {
			err = probes.AddLoop(wm)
		}
		return wm, err
	}

	// The wallet producer and the relay.
	dir := newDirectory(cfg.players)
	prodWM, err := newWM("wallet-producer")
	if err != nil {
		return err
	}
	if err := add(tree, "wallet-producer", newProducer(wallet, dir, rdb, cfg, prodWM, log)); err != nil {
		return err
	}
	relayWM, err := newWM("relay/" + wallet.store().Table())
	if err != nil {
		return err
	}
	relay, err := outbox.NewRelay(outbox.RelayConfig{Store: wallet.store(), Client: rdb, PollInterval: 250 * time.Millisecond,
		InfoInterval: time.Second, Watermark: relayWM, Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	if err := add(tree, "relay", relay); err != nil {
		return err
	}
	// The observer measures the outbox backlog whether the relay runs or
	// not (-fault-crash relay), so HeadwayOutboxBacklogTooOld can fire.
	observer, err := outbox.NewObserver(outbox.ObserverConfig{Store: wallet.store(), Interval: 2 * time.Second,
		Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	if err := add(tree, "outbox-observer", observer); err != nil {
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
		wm, err := newWM(group + "@" + event.StreamKey(platform.StreamWallet))
		if err != nil {
			return err
		}
		c, err := consumer.New(consumer.Config{Client: rdb, Stream: event.StreamKey(platform.StreamWallet), Catalog: catalog,
			Group: group, Consumer: cfg.consumer, Handlers: handlers, Guard: guard, Dedup: store,
			HandlerTimeout: 5 * time.Second, ReclaimIdle: cfg.reclaimIdle, Block: 500 * time.Millisecond,
			AlertPolicy: cfg.alertPolicy, AlertWindow: cfg.alertWindow,
			Watermark: wm, Registerer: reg, Logger: log})
		if err != nil {
			return err
		}
		if err := add(tree, name, c); err != nil {
			return err
		}
	}

	// The reconciliation job.
	if _, err := tree.AddJob(supervisor.JobConfig{Name: "reconcile", Interval: cfg.reconcile, RunAtStart: true,
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

	page, err := status.New(status.Config{Title: cfg.title, Tree: tree, Probes: probes})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /live", probes.LiveHandler())
	mux.Handle("GET /ready", probes.ReadyHandler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/status", page)
	mux.Handle("GET /{$}", http.RedirectHandler("/status", http.StatusFound))
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(ln) }()
	log.Info("demo running", slog.String("http", "http://"+ln.Addr().String()+"/status"),
		slog.String("mode", cfg.mode.String()), slog.Float64("rate", cfg.rate))

	err = tree.Serve(ctx)
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	if herr := <-httpDone; !errors.Is(herr, http.ErrServerClosed) {
		return errors.Join(err, herr)
	}
	return err
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

// openRedis connects to REDIS_URL or starts an embedded Redis.
func openRedis(cfg config, log *slog.Logger) (redis.UniversalClient, func(), error) {
	if cfg.redisURL != "" {
		rdb, err := service.OpenRedis(cfg.redisURL) // never repeats the URL, which may carry a password
		if err != nil {
			return nil, nil, err
		}
		log.Info("using Redis", slog.String("addr", rdb.Options().Addr))
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
