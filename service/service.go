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
	"os"
	"os/signal"
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
	rdb       redis.UniversalClient // opened by Redis, closed after the workers stop
	db        *pgxpool.Pool         // opened by Postgres, likewise
	closed    bool                  // closeConns ran: Redis and Postgres open nothing more
	redisUsed int                   // connections the workers added need at once
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
	// OpenMetrics when the scraper asks for it: the exemplars of traced
	// handlers (trace IDs) go only in that format.
	s.mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg, EnableOpenMetrics: true}))
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
