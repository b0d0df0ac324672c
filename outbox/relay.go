package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/thejerf/suture/v4"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/internal/logkey"
	"github.com/headwaylabs/headway/internal/promutil"
	"github.com/headwaylabs/headway/internal/redisutil"
	"github.com/headwaylabs/headway/readiness"
)

// Log attribute keys only the outbox writes (the shared ones, such as the
// error, come from internal/logkey).
const (
	attrTable = "table" // the outbox table an Observer measures
	attrRelay = "relay" // the outbox table a Relay drains
	attrRowID = "id"    // an outbox row's id
)

// Defaults of [RelayConfig].
const (
	DefaultBatchSize     = 1000
	DefaultPollInterval  = time.Second
	DefaultRetryInitial  = time.Second
	DefaultRetryMax      = 5 * time.Minute
	DefaultFailureLimit  = 10
	DefaultInfoInterval  = 5 * time.Second
	DefaultRetention     = 7 * 24 * time.Hour
	DefaultPruneInterval = time.Minute
	DefaultPruneBatch    = 1000
	DefaultOpTimeout     = 10 * time.Second
	// DefaultReplicaTimeout is the default RelayConfig.ReplicaTimeout.
	DefaultReplicaTimeout = time.Second
)

// RelayConfig configures a [Relay]. Client and one of Store and Pool are
// required; zero fields mean the defaults listed in [NewRelay].
type RelayConfig struct {
	// Store is where the outbox rows are. Default: a [PostgresStore] of
	// Table in Pool.
	Store Store
	// Pool is the PostgreSQL pool of the outbox's database, used when
	// Store is nil. The relay holds up to two of its connections at once
	// (the claim being appended and the next one) and opens one of its
	// own for LISTEN.
	Pool *pgxpool.Pool
	// Client is the Redis the streams live on (node or cluster). Set
	// ContextTimeoutEnabled in its options: without it go-redis ignores
	// context deadlines, and OpTimeout does not bound the appends (the
	// client's read and write timeouts and retries do; NewRelay logs a
	// warning).
	Client redis.UniversalClient
	// Table is the outbox table and NOTIFY channel of the default store.
	// Default DefaultTable; ignored when Store is set (its Table counts).
	Table string
	// BatchSize is how many rows one cycle claims and appends. Default 1000.
	BatchSize int
	// PollInterval is how long the relay waits for a notification before
	// looking anyway (the fallback if a NOTIFY is missed). Default 1s.
	PollInterval time.Duration
	// Retry is the backoff of a row whose append failed: due again
	// Retry.Delay(n) after its n-th failure. Defaults 1s doubling to 5m.
	Retry backoff.Exponential
	// FailureLimit: after this many failed cycles in a row, Serve returns
	// an error wrapping ErrRelayFailing (the supervisor restarts it and
	// shows it). Default 10.
	FailureLimit int
	// InfoInterval is how often the backlog is counted; an idle relay
	// wakes for it, whatever PollInterval is. Default 5s.
	InfoInterval time.Duration
	// Retention is how long published rows are kept before pruning.
	// Default 7 days; negative disables pruning.
	Retention time.Duration
	// PruneInterval and PruneBatch: how often and how many rows per
	// statement published rows are pruned. Defaults 1m, 1000.
	PruneInterval time.Duration
	PruneBatch    int
	// OpTimeout bounds each call of the relay to PostgreSQL (a claim, a
	// finish, the backlog count, one prune statement, the LISTEN connect)
	// and its pipeline of appends to Redis, so that a dependency that
	// hangs makes the relay failing or stalled, never wedged: the relay
	// heartbeats before every call. The watermark's LivenessWindow must
	// exceed OpTimeout + min(PollInterval, InfoInterval), the longest
	// stretch without a heartbeat: NewRelay refuses a config where it does
	// not. Default 10s.
	OpTimeout time.Duration
	// Replicas, when positive, is how many replicas must confirm each
	// batch's appends (Redis WAIT on the pipeline's connection) before its
	// rows are marked published. Redis replicates asynchronously: without
	// it, a primary that dies before its replicas have a batch loses it in
	// the failover while the rows stay marked published. A batch confirmed
	// by fewer within ReplicaTimeout counts as failed: its rows stay
	// unpublished and are appended again after their backoff (consumers'
	// dedup skips the copies), the cycle fails the watermark, and
	// headway_outbox_replica_unconfirmed_total counts them. Default 0:
	// no confirmation (a single node has no replica to wait for).
	// Only for a client of one node or of a Sentinel-watched primary
	// (*redis.Client): WAIT confirms one connection's writes, and a
	// cluster or ring client spreads them over nodes. ADR-022.
	Replicas int
	// ReplicaTimeout bounds the wait for Replicas. Default 1s; at least
	// 1ms, and below OpTimeout.
	ReplicaTimeout time.Duration
	// Watermark receives heartbeats, progress (the last published id),
	// failures and the backlog. Default one named "relay/<Table>".
	Watermark *readiness.Watermark
	// TracerProvider, when set, traces each cycle's appends in a producer
	// span linked to the producer spans of its rows (ADR-024); Propagator
	// reads those from the rows' trace fields (default
	// propagation.TraceContext{}). Nil: no tracing.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Relay appends unpublished outbox rows to their Redis streams. It reads
// them from a [Store]: [PostgresStore] (claims with FOR UPDATE SKIP
// LOCKED) in production, or an embedded store such as
// headway/outbox/sqliteoutbox. Several relays may run against one store;
// each cycle claims rows no other open claim holds. It is a
// suture.Service.
type Relay struct {
	cfg    RelayConfig
	store  Store
	wm     *readiness.Watermark
	log    *slog.Logger
	m      relayMetrics
	tracer trace.Tracer // nil without a TracerProvider
	prop   propagation.TextMapPropagator
}

var _ suture.Service = (*Relay)(nil)

type relayMetrics struct {
	published   *prometheus.CounterVec // stream
	failures    prometheus.Counter     // rows whose append failed
	cycles      *prometheus.CounterVec // outcome
	batch       prometheus.Histogram
	latency     prometheus.Histogram
	pruned      prometheus.Counter
	parked      prometheus.Counter // rows parked
	unconfirmed prometheus.Counter // rows appended but not confirmed by Replicas
	gauges      backlogGauges
}

// NewRelay returns a Relay. Every zero field of cfg takes the default its
// comment in [RelayConfig] states.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	store := cfg.Store
	if store == nil {
		if store, err = NewPostgresStore(PostgresConfig{Pool: cfg.Pool, Table: cfg.Table}); err != nil {
			return nil, err
		}
	}
	cfg.Table = store.Table()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Relay{cfg: cfg, store: store, wm: cfg.Watermark, log: cfg.Logger.With(slog.String(attrRelay, cfg.Table))}
	if cfg.TracerProvider != nil {
		r.tracer, r.prop = cfg.TracerProvider.Tracer(tracerName), cfg.Propagator
		if r.prop == nil {
			r.prop = propagation.TraceContext{}
		}
	}
	if r.wm == nil {
		if r.wm, err = readiness.NewWatermark(readiness.WatermarkConfig{Name: "relay/" + cfg.Table}); err != nil {
			return nil, err
		}
	}
	if err := r.registerMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	if !redisutil.ContextTimeouts(cfg.Client) {
		r.log.Warn("the Redis client ignores context deadlines (ContextTimeoutEnabled is off): " +
			"OpTimeout does not bound the appends; the client's read and write timeouts and retries do")
	}
	return r, nil
}

// Validate reports whether [NewRelay] would accept c as far as c alone
// can tell — required fields, the table name, signs and relations of sizes
// and durations, OpTimeout against the watermark's liveness window —
// without connecting to anything or registering metrics. The error wraps
// [ErrInvalidConfig].
func (c RelayConfig) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns c with its defaults filled in, checked.
func (c RelayConfig) withDefaults() (RelayConfig, error) {
	if (c.Pool == nil && c.Store == nil) || c.Client == nil {
		return c, fmt.Errorf("%w: Client and one of Store and Pool are required", ErrInvalidConfig)
	}
	if c.Store == nil {
		if c.Table == "" {
			c.Table = DefaultTable
		}
		if !ValidTableName(c.Table) {
			return c, fmt.Errorf("%w: table name %q", ErrInvalidConfig, c.Table)
		}
	}
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	defInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	defInt(&c.BatchSize, DefaultBatchSize)
	defInt(&c.FailureLimit, DefaultFailureLimit)
	defInt(&c.PruneBatch, DefaultPruneBatch)
	def(&c.PollInterval, DefaultPollInterval)
	def(&c.Retry.Initial, DefaultRetryInitial)
	def(&c.Retry.Max, DefaultRetryMax)
	def(&c.InfoInterval, DefaultInfoInterval)
	def(&c.Retention, DefaultRetention)
	def(&c.PruneInterval, DefaultPruneInterval)
	def(&c.OpTimeout, DefaultOpTimeout)
	def(&c.ReplicaTimeout, DefaultReplicaTimeout)
	if c.Replicas < 0 || c.ReplicaTimeout < time.Millisecond || (c.Replicas > 0 && c.ReplicaTimeout >= c.OpTimeout) {
		return c, fmt.Errorf("%w: Replicas %d must not be negative, and ReplicaTimeout %v must be at least 1ms (WAIT counts milliseconds; 0 would wait for ever) and stay below OpTimeout %v",
			ErrInvalidConfig, c.Replicas, c.ReplicaTimeout, c.OpTimeout)
	}
	if _, node := c.Client.(*redis.Client); !node && c.Replicas > 0 {
		return c, fmt.Errorf("%w: Replicas needs a client of one node or of a Sentinel-watched primary (*redis.Client), not %T: WAIT confirms the writes of one connection, and a cluster or ring spreads them over nodes",
			ErrInvalidConfig, c.Client)
	}
	if c.BatchSize < 0 || c.FailureLimit < 0 || c.PruneBatch < 0 || c.PollInterval < 0 ||
		c.Retry.Validate() != nil || c.InfoInterval < 0 || c.PruneInterval < 0 ||
		c.OpTimeout < 0 {
		return c, fmt.Errorf("%w: negative or inverted durations or sizes", ErrInvalidConfig)
	}
	// The longest stretch without a heartbeat is one call, or one wait
	// (at most PollInterval, and an idle relay wakes every InfoInterval):
	// a relay whose watermark would judge that wedged is refused.
	win := readiness.DefaultLivenessWindow
	if c.Watermark != nil {
		win = c.Watermark.LivenessWindow()
	}
	if wait := min(c.PollInterval, c.InfoInterval); c.OpTimeout+wait >= win {
		return c, fmt.Errorf("%w: OpTimeout %v + the longest wait %v (PollInterval, at most InfoInterval) must stay below the watermark's LivenessWindow %v",
			ErrInvalidConfig, c.OpTimeout, wait, win)
	}
	return c, nil
}

// op starts one call of the loop to PostgreSQL or Redis: it records a
// heartbeat and returns ctx bounded by OpTimeout. Every call is an op, so
// the loop beats at least once per OpTimeout (plus a wait) however the
// dependency behaves, and liveness never depends on it.
func (r *Relay) op(ctx context.Context) (context.Context, context.CancelFunc) {
	r.wm.Heartbeat()
	return context.WithTimeout(ctx, r.cfg.OpTimeout)
}

// wait waits on l for up to d; a LISTEN connection it opens on the way is
// bounded by OpTimeout.
func (r *Relay) wait(ctx context.Context, l Subscription, d time.Duration) {
	wctx, cancel := context.WithTimeout(ctx, d+r.cfg.OpTimeout)
	defer cancel()
	l.Wait(wctx, d)
}

func (r *Relay) registerMetrics(reg prometheus.Registerer) error {
	o := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "headway", Subsystem: "outbox", Name: name, Help: help, ConstLabels: prometheus.Labels{"table": r.cfg.Table}}
	}
	var err error
	reg1 := func(c prometheus.Collector) prometheus.Collector {
		if err != nil {
			return c
		}
		var out prometheus.Collector
		out, err = promutil.Register(reg, c)
		return out
	}
	published := reg1(prometheus.NewCounterVec(prometheus.CounterOpts(o("published_total", "Rows appended to their stream and marked published.")), []string{"stream"}))
	failures := reg1(prometheus.NewCounter(prometheus.CounterOpts(o("publish_failures_total", "Rows whose append failed; they are kept and retried with backoff."))))
	cycles := reg1(prometheus.NewCounterVec(prometheus.CounterOpts(o("relay_cycles_total", "Relay cycles by outcome (published, empty, failed).")), []string{"outcome"}))
	batch := reg1(prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "headway", Subsystem: "outbox", Name: "relay_batch_rows",
		Help: "Rows claimed per relay cycle.", ConstLabels: prometheus.Labels{"table": r.cfg.Table},
		Buckets: []float64{1, 5, 10, 50, 100, 250, 500, 1000}}))
	latency := reg1(prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "headway", Subsystem: "outbox", Name: "commit_to_publish_seconds",
		Help: "Time from a row's insert to its append to the stream.", ConstLabels: prometheus.Labels{"table": r.cfg.Table},
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}))
	pruned := reg1(prometheus.NewCounter(prometheus.CounterOpts(o("pruned_total", "Published rows deleted after the retention period."))))
	parked := reg1(prometheus.NewCounter(prometheus.CounterOpts(o("parked_total", "Rows parked by this relay: they can never be appended (they do not encode) and wait for an operator."))))
	unconfirmed := reg1(prometheus.NewCounter(prometheus.CounterOpts(o("replica_unconfirmed_total", "Rows appended whose batch fewer than Replicas replicas confirmed within ReplicaTimeout: kept unpublished and appended again."))))
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	gauges, err := registerBacklogGauges(reg, r.cfg.Table)
	if err != nil {
		return err
	}
	// Every outcome exists from the start, so increase() sees the first one.
	for _, o := range []string{"published", "empty", "failed"} {
		cycles.(*prometheus.CounterVec).WithLabelValues(o)
	}
	r.m = relayMetrics{published: published.(*prometheus.CounterVec), failures: failures.(prometheus.Counter),
		cycles: cycles.(*prometheus.CounterVec), batch: batch.(prometheus.Histogram),
		latency: latency.(prometheus.Histogram), pruned: pruned.(prometheus.Counter),
		parked: parked.(prometheus.Counter), unconfirmed: unconfirmed.(prometheus.Counter), gauges: gauges}
	return nil
}

// Watermark returns the relay's watermark.
func (r *Relay) Watermark() *readiness.Watermark { return r.wm }

// String names the relay in logs and supervision trees.
func (r *Relay) String() string { return "relay " + r.cfg.Table }

// Serve relays until ctx is cancelled (it then returns ctx's error) or
// until FailureLimit cycles in a row failed (an error wrapping
// ErrRelayFailing). A failed cycle keeps its rows: they get attempts,
// last_error and a next_attempt_at with backoff. While rows keep coming
// in full batches, the relay claims the next batch while it appends the
// current one (ADR-011, "Claiming ahead"), so it holds at most two claims — and
// at most two of the store's connections — at once; Serve returns only
// after both are finished or given back.
func (r *Relay) Serve(ctx context.Context) error {
	// Listen before the first cycle, so that no commit between a cycle and
	// the wait after it goes unnoticed.
	sctx, cancel := r.op(ctx)
	l := r.store.Subscribe(sctx)
	cancel()
	defer l.Close()
	var ahead *claimAhead // the next batch's claim, opened during the last cycle
	defer func() {
		if ahead != nil {
			ahead.drop()
		}
	}()
	var nextInfo, nextPrune time.Time
	failures := 0
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.wm.Heartbeat()
		now := time.Now()
		infoDue := !now.Before(nextInfo)
		pruneDue := r.cfg.Retention > 0 && !now.Before(nextPrune)
		// The backlog count and pruning take a connection of their own.
		// They never run while a claim is open: with a pool of one
		// connection that claim would hold it until the cycle after them.
		// A relay that has its next claim open skips them once and does
		// not claim ahead in this cycle, so the next round runs them.
		lookAhead := true
		if ahead == nil {
			if infoDue {
				r.updateInfo(ctx)
				nextInfo = now.Add(r.cfg.InfoInterval)
			}
			if pruneDue {
				r.prune(ctx)
				nextPrune = now.Add(r.cfg.PruneInterval)
			}
		} else if infoDue || pruneDue {
			lookAhead = false
		}
		var b *batch
		var err error
		if ahead != nil {
			b, err = ahead.wait()
			ahead = nil
		} else {
			b, err = r.claim(ctx)
		}
		n := 0
		if err == nil {
			n, ahead, err = r.cycle(ctx, b, lookAhead)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failures++
			r.m.cycles.WithLabelValues("failed").Inc()
			r.wm.Fail(err)
			r.log.Warn("relay cycle failed: rows kept for retry", slog.String(logkey.Error, err.Error()), slog.Int(logkey.Consecutive, failures))
			if failures >= r.cfg.FailureLimit {
				return fmt.Errorf("%w: %d cycles in a row: %w", ErrRelayFailing, failures, err)
			}
			r.wait(ctx, l, min(r.cfg.PollInterval, time.Duration(failures)*100*time.Millisecond+r.cfg.PollInterval/10))
			continue
		}
		if failures > 0 || r.wm.Snapshot().ConsecutiveFailures > 0 {
			failures = 0
			r.wm.Succeed()
		}
		if ahead != nil || n == r.cfg.BatchSize {
			continue // more rows are waiting
		}
		if n == 0 {
			r.m.cycles.WithLabelValues("empty").Inc()
		}
		// Wake for the next backlog count too, so an idle relay keeps its
		// heartbeat and backlog fresh whatever PollInterval is.
		r.wait(ctx, l, max(min(r.cfg.PollInterval, time.Until(nextInfo)), time.Millisecond))
	}
}

// maxStoredError bounds the error texts an Outcome carries to a store.
const maxStoredError = 1024

// truncate cuts s to at most n bytes, at a rune boundary (the column is
// text: PostgreSQL refuses a cut UTF-8 sequence).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// updateInfo counts the backlog and the parked rows for the watermark and
// the gauges.
func (r *Relay) updateInfo(ctx context.Context) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	b, err := r.store.Backlog(ctx)
	if err != nil {
		r.wm.BacklogUnknown()
		r.wm.SetLag(-1)
		return
	}
	r.wm.SetBacklog(b.Rows)
	r.m.gauges.set(b, time.Now())
	r.wm.SetLag(b.Oldest)
}

// prune deletes published rows older than Retention, PruneBatch at a
// time, so no statement holds a long lock.
func (r *Relay) prune(ctx context.Context) {
	for ctx.Err() == nil {
		octx, cancel := r.op(ctx)
		n, err := r.store.Prune(octx, r.cfg.Retention, r.cfg.PruneBatch)
		cancel()
		if err != nil {
			r.log.Warn("pruning published rows failed", slog.String(logkey.Error, err.Error()))
			return
		}
		r.m.pruned.Add(float64(n))
		if n < int64(r.cfg.PruneBatch) {
			return
		}
	}
}
