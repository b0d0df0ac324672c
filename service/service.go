// Package service runs a headway service in one value: it owns the
// supervisor tree, the probes, the metrics registry, the status page and
// the HTTP server (/live, /ready, /metrics, /status, optionally
// /debug/pprof/), and shuts down in order on SIGTERM or SIGINT: /ready
// answers 503 first, for DrainDelay, while every worker still runs; then
// the workers are stopped (consumers drain their handlers and acknowledge
// what finished, the relay finishes its batch); then the HTTP server
// closes and Run returns.
//
// Adding a worker is one call — [Service.AddConsumer] and
// [Service.AddRelay] (built from their configs, with the service's Redis,
// PostgreSQL, brandguard, registry and logger filled in), [Service.Add]
// (a consumer, a relay or any suture.Service built by hand),
// [Service.AddFunc] (a plain func(ctx) error), [Service.AddJob] (a
// scheduled job) — and registers its readiness checks with it: the
// worker's "service/<name>", and the loop of a worker that reports a
// watermark (supervisor.WatermarkReporter) or the job's. Nothing is
// registered twice by hand.
//
// Connections come from the environment the way Twelve-Factor services
// expect, and explicit config wins: [Service.Redis] opens $REDIS_URL
// (Config.RedisURL) once, with deadlines honoured and a pool checked
// against the consumers it serves; [Service.Postgres] opens $DATABASE_URL
// (Config.DatabaseURL) once; the brand mode is MULTI_BRAND_ENFORCEMENT's.
// The service closes what it opened after its workers stop.
//
// The pieces stay usable on their own, for a team with its own HTTP server
// or supervisor: [Service.Handler] is the mux to mount, and the tree,
// probes and registry are those of packages supervisor, readiness and
// client_golang (see their docs).
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	neturl "net/url"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/status"
	"github.com/headwaylabs/headway/supervisor"
)

// EnvListenAddr names the environment variable of the default listen
// address.
const EnvListenAddr = "LISTEN_ADDR"

// Defaults of [Config].
const (
	DefaultAddr       = ":8080"
	DefaultDrainDelay = 5 * time.Second
)

// ShutdownCheck is the readiness check that fails from the moment the
// service starts shutting down.
const ShutdownCheck = "service/shutdown"

// ErrInvalidConfig: a Config New cannot use.
var ErrInvalidConfig = errors.New("service: invalid config")

// Config configures a [Service]. Name is required; every other zero field
// takes the default its comment states.
type Config struct {
	// Name is the service's name: the supervisor tree's and the status
	// page's title, e.g. "promotion-consumer".
	Name string
	// Addr is the listen address of the HTTP server. Default: $LISTEN_ADDR,
	// else DefaultAddr (":8080", all interfaces, as a pod's probes need).
	Addr string
	// Pprof also serves net/http/pprof under /debug/pprof/.
	Pprof bool
	// Registry receives every metric. Default: a new registry with the Go
	// and process collectors.
	Registry *prometheus.Registry
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// DrainDelay is how long /ready answers 503 before the workers are
	// stopped, so that whatever routes by readiness stops first. Default
	// DefaultDrainDelay (5s); negative: none.
	DrainDelay time.Duration
	// Supervisor configures the tree; its Probes, Registerer and Logger
	// are set from this Config, and its Name defaults to Name.
	Supervisor supervisor.Config
	// Probes configures the probes; its Registerer is set from this
	// Config.
	Probes readiness.ProbesConfig
	// RedisURL is the Redis of [Service.Redis]. Default $REDIS_URL.
	RedisURL string
	// RedisPoolSize is the connection pool of [Service.Redis]'s client.
	// Default: the URL's pool_size, else go-redis's 10 per GOMAXPROCS, at
	// least 32 (connections open on demand, so an unused capacity costs
	// nothing).
	// [Service.AddConsumer] and [Service.AddRelay] refuse a worker the
	// pool cannot serve (see ConnsPerConsumer).
	RedisPoolSize int
	// DatabaseURL is the PostgreSQL of [Service.Postgres]. Default
	// $DATABASE_URL.
	DatabaseURL string
}

// Service is a running service's supervisor tree, probes, registry, status
// page and HTTP server. Build it with [New], add workers, then [Service.Run].
type Service struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	probes   *readiness.Probes
	tree     *supervisor.Tree
	mux      *http.ServeMux
	page     *status.Handler
	listener net.Listener
	stopping atomic.Bool

	mu        sync.Mutex
	rdb       *redis.Client // opened by Redis, closed after the workers stop
	db        *pgxpool.Pool // opened by Postgres, likewise
	closed    bool          // closeConns ran: Redis and Postgres open nothing more
	redisUsed int           // connections the workers added need at once
}

// Validate reports a missing Name, and what the supervisor's config
// reports (its Probes, Registerer and Logger are the service's).
func (c Config) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("%w: Name is required", ErrInvalidConfig)
	}
	sup := c.Supervisor
	if sup.Name == "" {
		sup.Name = c.Name
	}
	return sup.Validate()
}

// New builds a Service and binds its listen address, so that an address
// in use fails here, before any worker starts. Close releases it if Run is
// never called.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Addr == "" {
		cfg.Addr = os.Getenv(EnvListenAddr)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.DrainDelay == 0 {
		cfg.DrainDelay = DefaultDrainDelay
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &Service{cfg: cfg, log: cfg.Logger, reg: cfg.Registry}
	pcfg := cfg.Probes
	pcfg.Registerer = s.reg
	probes, err := readiness.NewProbes(pcfg)
	if err != nil {
		return nil, err
	}
	s.probes = probes
	if err := probes.AddReadinessCheck(ShutdownCheck, s.shutdownCheck); err != nil {
		return nil, err
	}
	tcfg := cfg.Supervisor
	if tcfg.Name == "" {
		tcfg.Name = cfg.Name
	}
	tcfg.Probes, tcfg.Registerer, tcfg.Logger = probes, s.reg, s.log
	if s.tree, err = supervisor.New(tcfg); err != nil {
		return nil, err
	}
	page, err := status.New(status.Config{Title: cfg.Name, Tree: s.tree, Probes: probes})
	if err != nil {
		return nil, err
	}
	s.page = page
	s.mux = http.NewServeMux()
	s.mux.Handle("/live", probes.LiveHandler())
	s.mux.Handle("/ready", probes.ReadyHandler())
	s.mux.Handle("/status", page)
	s.mux.Handle("GET /{$}", http.RedirectHandler("/status", http.StatusFound))
	s.mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	if cfg.Pprof {
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if s.listener, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("service: listen on %s: %w", cfg.Addr, err)
	}
	return s, nil
}

// Registerer is where workers register their metrics.
func (s *Service) Registerer() prometheus.Registerer { return s.reg }

// Logger is the service's logger.
func (s *Service) Logger() *slog.Logger { return s.log }

// Probes are the service's probes, for checks of its own
// ([readiness.Probes.AddReadinessCheck]).
func (s *Service) Probes() *readiness.Probes { return s.probes }

// Tree is the service's supervisor tree.
func (s *Service) Tree() *supervisor.Tree { return s.tree }

// Handler is the mux of /live, /ready, /metrics, /status (and pprof; /
// redirects to /status), for a service that serves it itself; run the
// status page's trend sampler then too (Run does: status.Handler.Run).
func (s *Service) Handler() http.Handler { return s.mux }

// Addr is the address the service listens on (with the port chosen when
// Config.Addr asked for port 0).
func (s *Service) Addr() string { return s.listener.Addr().String() }

// Add supervises svc as the worker name and registers its checks
// (supervisor.Tree.Add): "service/<name>" and, for a consumer, a relay or
// any WatermarkReporter, its loop.
func (s *Service) Add(name string, svc suture.Service) error { return s.tree.Add(name, svc) }

// AddFunc supervises fn as the worker name: it runs until its context
// ends and is restarted, with backoff, whenever it returns early. Return
// an error wrapping suture.ErrDoNotRestart to stop it for good.
func (s *Service) AddFunc(name string, fn func(ctx context.Context) error) error {
	if fn == nil {
		return fmt.Errorf("%w: AddFunc %q: nil function", ErrInvalidConfig, name)
	}
	return s.tree.Add(name, funcService{name: name, fn: fn})
}

// AddJob schedules a job (supervisor.Tree.AddJob) and registers its checks.
func (s *Service) AddJob(cfg supervisor.JobConfig) (*supervisor.Job, error) {
	return s.tree.AddJob(cfg)
}

// funcService is a function as a suture.Service.
type funcService struct {
	name string
	fn   func(context.Context) error
}

func (f funcService) Serve(ctx context.Context) error { return f.fn(ctx) }
func (f funcService) String() string                  { return f.name }

// shutdownCheck fails once the service is shutting down.
func (s *Service) shutdownCheck() error {
	if s.stopping.Load() {
		return readiness.NotReady("shutting down")
	}
	return nil
}

// Close releases the listen address and the connections the service
// opened, for a Service whose Run was never called; Run releases them
// itself.
func (s *Service) Close() error {
	s.closeConns()
	return s.listener.Close()
}

// closeConns closes the Redis client and the PostgreSQL pool the service
// opened.
//
// A worker the tree abandoned (it missed the supervisor's shutdown
// timeout) may still hold a PostgreSQL connection, and the pool's Close
// waits for every connection to come back: the close is given
// poolCloseTimeout, then left to finish in the background, so that Run
// keeps its shutdown deadline.
func (s *Service) closeConns() {
	s.mu.Lock()
	rdb, db := s.rdb, s.db
	s.rdb, s.db, s.closed = nil, nil, true
	s.mu.Unlock()
	if rdb != nil {
		_ = rdb.Close()
	}
	if db != nil {
		done := make(chan struct{})
		go func() { db.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(poolCloseTimeout):
			s.log.Warn("PostgreSQL pool not closed: a connection is still in use by a worker that did not stop",
				slog.Duration("waited", poolCloseTimeout))
		}
	}
}

// poolCloseTimeout bounds how long Run waits for the PostgreSQL pool to
// close.
const poolCloseTimeout = 5 * time.Second

// Run serves the HTTP endpoints and runs the workers until ctx ends or
// SIGTERM or SIGINT arrives, then shuts down in order: /ready fails
// (ShutdownCheck) for DrainDelay while the workers go on; the tree stops
// its workers (each within the supervisor's StopTimeout: consumers drain
// and acknowledge what finished); the HTTP server closes. It returns nil
// after a shutdown asked for, or the tree's error when the tree stopped by
// itself (a worker returned suture.ErrTerminateSupervisorTree), after the
// same steps.
func (s *Service) Run(ctx context.Context) error {
	sigCtx, stopSignals := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(s.listener) }()

	treeCtx, stopTree := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTree()
	treeDone := make(chan error, 1)
	go func() { treeDone <- s.tree.Serve(treeCtx) }()
	trendsDone := make(chan struct{})
	go func() { _ = s.page.Run(treeCtx); close(trendsDone) }() // the status page's charts
	defer func() { stopTree(); <-trendsDone }()
	s.log.Info("service running", slog.String("name", s.cfg.Name), slog.String("addr", s.Addr()))

	var treeErr, httpErr error
	treeStopped := false
	select {
	case <-sigCtx.Done():
	case treeErr = <-treeDone:
		treeStopped = true
	case err := <-served:
		httpErr = fmt.Errorf("service: HTTP server: %w", err)
		s.log.Error("HTTP server failed: shutting down", slog.String("error", err.Error()))
	}
	s.stopping.Store(true)
	s.log.Info("shutting down: /ready fails from now", slog.Duration("drain_delay", max(s.cfg.DrainDelay, 0)))
	if !treeStopped {
		if s.cfg.DrainDelay > 0 {
			select {
			case <-time.After(s.cfg.DrainDelay):
			case treeErr = <-treeDone:
				treeStopped = true
			}
		}
		stopTree()
		if !treeStopped {
			treeErr = <-treeDone
		}
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		s.log.Warn("HTTP server shutdown", slog.String("error", err.Error()))
	}
	s.closeConns()
	s.log.Info("service stopped")
	if errors.Is(treeErr, context.Canceled) {
		treeErr = nil
	}
	return errors.Join(httpErr, treeErr)
}

// Environment variables the helpers below read.
const (
	EnvRedisURL    = "REDIS_URL"    // redis://[user:password@]host:port/db
	EnvDatabaseURL = "DATABASE_URL" // postgres://…
)

// OpenRedis returns a Redis client for url (when empty, $REDIS_URL) with
// the options headway's docs recommend: ContextTimeoutEnabled, so that
// every call honours its context's deadline (a hung Redis then fails calls
// on time instead of after the client's read timeouts and retries). The
// pool is go-redis's default (10 per CPU): each consumer holds one
// connection in its blocking read, beside its handlers' and the relay's
// calls. An error never repeats the URL, which may carry a password.
func OpenRedis(url string) (*redis.Client, error) { return openRedis(url, 0) }

// openRedis is OpenRedis with a pool of poolSize: 0 is go-redis's
// default, negative the service's (defaultRedisPool), each unless the
// URL's pool_size sets it.
func openRedis(url string, poolSize int) (*redis.Client, error) {
	source := "the Redis URL"
	if url == "" {
		url, source = os.Getenv(EnvRedisURL), EnvRedisURL
	}
	if url == "" {
		return nil, fmt.Errorf("%w: no Redis URL (set %s)", ErrInvalidConfig, EnvRedisURL)
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		var uerr *neturl.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("%w: %s is not a valid redis:// URL: %v", ErrInvalidConfig, source, err)
	}
	opts.ContextTimeoutEnabled = true
	switch {
	case poolSize > 0:
		opts.PoolSize = poolSize
	case poolSize < 0 && opts.PoolSize == 0: // the service's default, unless the URL's pool_size says otherwise
		opts.PoolSize = defaultRedisPool()
	}
	return redis.NewClient(opts), nil
}

// OpenPostgres returns a pgx pool for url (when empty, $DATABASE_URL). It
// does not connect: the first use does (pgxpool.Pool.Ping to check).
func OpenPostgres(ctx context.Context, url string) (*pgxpool.Pool, error) {
	source := "the PostgreSQL URL"
	if url == "" {
		url, source = os.Getenv(EnvDatabaseURL), EnvDatabaseURL
	}
	if url == "" {
		return nil, fmt.Errorf("%w: no PostgreSQL URL (set %s)", ErrInvalidConfig, EnvDatabaseURL)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not a valid PostgreSQL URL", ErrInvalidConfig, source)
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// Guard returns a brandguard.Guard for catalog in the mode of
// MULTI_BRAND_ENFORCEMENT (default enforce; an invalid value is an error),
// registering its metrics and logging with the service's.
func (s *Service) Guard(catalog *event.Catalog) (*brandguard.Guard, error) {
	mode, err := brandguard.ModeFromEnv(os.LookupEnv)
	if err != nil {
		return nil, err
	}
	return brandguard.New(brandguard.Config{Catalog: catalog, Mode: mode, Registerer: s.reg, Logger: s.log})
}

// WriterCheck is the readiness check AddWriter registers.
const WriterCheck = "outbox/writer"

// AddWriter registers the outbox writer's readiness check (WriterCheck):
// not ready for a while after a producer brand violation
// (outbox.Writer.Check).
func (s *Service) AddWriter(w *outbox.Writer) error {
	return s.probes.AddReadinessCheck(WriterCheck, w.Check)
}

// Connections a worker of [Service.AddConsumer] or [Service.AddRelay]
// needs from the Redis pool at once: a consumer holds one in its blocking
// read, and at most three more for its batch in flight (the dedup claim,
// the settle and acknowledgement, the ownership refresh and lag reads); a
// relay one for its pipelined append and one for its stream reads.
const (
	ConnsPerConsumer = 4
	ConnsPerRelay    = 2
)

// Redis returns the service's Redis client, opening it on the first call
// with [OpenRedis] (Config.RedisURL, else $REDIS_URL) and a pool of
// Config.RedisPoolSize. The service closes it after its workers stop.
func (s *Service) Redis() (*redis.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rdb != nil {
		return s.rdb, nil
	}
	if s.closed {
		return nil, errClosed
	}
	size := s.cfg.RedisPoolSize
	if size <= 0 {
		size = -1 // the service's default unless the URL sets pool_size
	}
	rdb, err := openRedis(s.cfg.RedisURL, size)
	if err != nil {
		return nil, err
	}
	s.rdb = rdb
	return rdb, nil
}

// errClosed: the service has shut down and closed its connections.
var errClosed = errors.New("service: shut down: its connections are closed")

// redisPoolSize is the pool of the service's Redis client; s.mu is held.
func (s *Service) redisPoolSize() int {
	if s.rdb != nil {
		return s.rdb.Options().PoolSize
	}
	if s.cfg.RedisPoolSize > 0 {
		return s.cfg.RedisPoolSize
	}
	return defaultRedisPool()
}

// defaultRedisPool is the pool of the service's Redis client when neither
// Config.RedisPoolSize nor the URL's pool_size sets it.
func defaultRedisPool() int { return max(10*runtime.GOMAXPROCS(0), 32) }

// Postgres returns the service's PostgreSQL pool, opening it on the first
// call with [OpenPostgres] (Config.DatabaseURL, else $DATABASE_URL). The
// service closes it after its workers stop. A PostgreSQL inbox holds one
// connection per handler in flight: size the pool above the consumers'
// Concurrency (pool_max_conns in the URL).
func (s *Service) Postgres(ctx context.Context) (*pgxpool.Pool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return s.db, nil
	}
	if s.closed {
		return nil, errClosed
	}
	db, err := OpenPostgres(ctx, s.cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	s.db = db
	return db, nil
}

// reserveRedis counts n more connections of the service's Redis client,
// or fails when its pool cannot serve them. The worker that reserved gives
// them back with releaseRedis when it is not added after all.
func (s *Service) reserveRedis(name string, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size := s.redisPoolSize(); s.redisUsed+n > size {
		return fmt.Errorf("%w: worker %s would need %d Redis connections at once, beside the %d of the workers added before; the pool has %d (set Config.RedisPoolSize)",
			ErrInvalidConfig, name, n, s.redisUsed, size)
	}
	s.redisUsed += n
	return nil
}

// isServiceRedis reports whether c is the client of [Service.Redis]: a
// worker given it by hand is counted against its pool too.
func (s *Service) isServiceRedis(c redis.UniversalClient) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc, ok := c.(*redis.Client)
	return ok && s.rdb != nil && rc == s.rdb
}

func (s *Service) releaseRedis(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redisUsed -= n
}

// AddConsumer builds a consumer from cfg and adds it as the worker name,
// with its checks ([Service.Add]). Zero fields of cfg take the service's:
// Client [Service.Redis], Guard [Service.Guard] of cfg.Catalog,
// Registerer and Logger; the rest keep consumer.Config's defaults.
func (s *Service) AddConsumer(name string, cfg consumer.Config) (err error) {
	if cfg.Client == nil || s.isServiceRedis(cfg.Client) {
		rdb, rerr := s.Redis()
		if rerr != nil {
			return rerr
		}
		if rerr := s.reserveRedis(name, ConnsPerConsumer); rerr != nil {
			return rerr
		}
		defer func() { // err is the result: give the connections back when the worker is not added
			if err != nil {
				s.releaseRedis(ConnsPerConsumer)
			}
		}()
		cfg.Client = rdb
	}
	if cfg.Guard == nil && cfg.Catalog != nil {
		g, err := s.Guard(cfg.Catalog)
		if err != nil {
			return err
		}
		cfg.Guard = g
	}
	if cfg.Registerer == nil {
		cfg.Registerer = s.reg
	}
	if cfg.Logger == nil {
		cfg.Logger = s.log
	}
	c, err := consumer.New(cfg)
	if err != nil {
		return err
	}
	return s.Add(name, c)
}

// AddRelay builds an outbox relay from cfg and adds it as the worker
// name, with its checks. Zero fields of cfg take the service's: Client
// [Service.Redis], Pool [Service.Postgres] (unless cfg.Store is set),
// Registerer and Logger.
func (s *Service) AddRelay(ctx context.Context, name string, cfg outbox.RelayConfig) (err error) {
	if cfg.Client == nil || s.isServiceRedis(cfg.Client) {
		rdb, rerr := s.Redis()
		if rerr != nil {
			return rerr
		}
		if rerr := s.reserveRedis(name, ConnsPerRelay); rerr != nil {
			return rerr
		}
		defer func() { // err is the result: give the connections back when the worker is not added
			if err != nil {
				s.releaseRedis(ConnsPerRelay)
			}
		}()
		cfg.Client = rdb
	}
	if cfg.Store == nil && cfg.Pool == nil {
		db, err := s.Postgres(ctx)
		if err != nil {
			return err
		}
		cfg.Pool = db
	}
	if cfg.Registerer == nil {
		cfg.Registerer = s.reg
	}
	if cfg.Logger == nil {
		cfg.Logger = s.log
	}
	r, err := outbox.NewRelay(cfg)
	if err != nil {
		return err
	}
	return s.Add(name, r)
}
