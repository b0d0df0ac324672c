package consumer

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/readiness"
)

// Defaults of [Config].
const (
	DefaultBatchSize       = 500
	DefaultBlock           = time.Second
	DefaultConcurrency     = 8
	DefaultHandlerTimeout  = 30 * time.Second
	DefaultMaxDeliveries   = 5
	DefaultReclaimIdle     = time.Minute
	DefaultConsumerIdle    = time.Hour
	DefaultDrainTimeout    = 8 * time.Second
	DefaultInfoInterval    = 5 * time.Second
	DefaultAlertWindow     = 5 * time.Minute
	DefaultFailureLimit    = 30
	DefaultStartID         = "0"
	DefaultRetryAttempts   = 3
	DefaultRetryInitial    = 100 * time.Millisecond
	DefaultRetryMax        = 2 * time.Second
	deadLetterSuffix       = ":dlq"
	maxDeadLetterErrorText = 2048
)

// RetryPolicy is the in-process retry of a failing handler within one
// delivery: Attempts tries in all, waiting Backoff.Delay(n) after the n-th
// failure. Zero fields mean the defaults (3 attempts, 100ms doubling to
// 2s); Attempts 1 means no retry.
//
// Each attempt starts clean. With the PostgreSQL inbox, the first attempt
// of a lane's entries runs in the lane's transaction, each in a savepoint
// of its own (ADR-019), and every retry is a Process call of its own: its
// own transaction. Either way a failed attempt's writes roll back, so a
// retried handler never commits a failed attempt's writes and never
// inherits an aborted transaction (ADR-014). The attempts stop early
// on a Permanent error, a brand mismatch, shutdown, or an error of the
// store itself (dedup.ErrStore: the entry stays pending).
type RetryPolicy struct {
	Attempts int
	Backoff  backoff.Exponential
}

// Config configures a [Consumer]. Client, Stream, Group and Handlers are
// required; every other zero field means the default given in [New].
type Config struct {
	// Client is the Redis client: a single node, sentinel or cluster. The
	// consumer holds one of its connections in a blocking read; size the
	// pool for that plus the info poll and the handlers' own use. Set
	// ContextTimeoutEnabled in its options: without it go-redis ignores
	// context deadlines, and a hung Redis holds acknowledgements, dead
	// letters and shutdown for its read timeouts and retries (New logs a
	// warning).
	Client redis.UniversalClient
	// Stream is the stream key, e.g. event.StreamKey("wallet").
	Stream string
	// CatalogStream is the stream's name in Catalog. Default: the catalog
	// stream whose key is Stream.
	CatalogStream string
	// Catalog checks the handlers at start-up and bounds the event_type
	// metric label. Required: platform.Catalog() for the platform's
	// streams, or a catalog of your own.
	Catalog *event.Catalog
	// Group is the consumer group, normally the consuming service's name
	// (rolling_service). It is also the dedup scope and brandguard's
	// consumer label.
	Group string
	// Consumer is this process's name in the group. It must be stable
	// across restarts of the same pod so that its pending entries are
	// found again. Default: the host name.
	Consumer string
	// Handlers by event type. Every type must be emitted on the stream
	// according to the catalog. Entries of other types are acknowledged
	// as unhandled.
	Handlers map[event.Type]Handler
	// BatchHandlers by event type: set-based handlers that get a lane's
	// run of entries of their type at once, in one inbox transaction
	// (ADR-019). They need a Dedup store that is a dedup.TxBatcher (the
	// PostgreSQL inbox), without TxPerEvent. A type has a Handler or a
	// BatchHandler, not both.
	BatchHandlers map[event.Type]BatchHandler
	// Middleware wraps every handler, the first element outermost. A
	// panic recoverer always sits inside it, next to the handler.
	Middleware []Middleware
	// Guard judges envelopes. Default: brandguard.New with ModeEnforce,
	// the same Registerer and Logger. Build your own to set the mode from
	// MULTI_BRAND_ENFORCEMENT.
	Guard *brandguard.Guard
	// Dedup records processed events; nil means no deduplication. A store
	// that implements dedup.Batcher is claimed and settled once per batch.
	// With one that implements dedup.TxBatcher (the PostgreSQL inbox), the
	// first attempts of a lane's entries run in one transaction, each in
	// a savepoint of its own, with one commit (ADR-019); retries run one
	// transaction per attempt.
	Dedup dedup.Store
	// TxPerEvent runs every handler attempt on a dedup.TxBatcher in a
	// transaction of its own, as on any other transactional store. Set
	// it for handlers that use SET LOCAL or transaction-level advisory
	// locks (in a batch they carry over to the handlers after them), or
	// that hold row locks for long (a batch keeps them until it commits).
	TxPerEvent bool
	// BatchSize is the XREADGROUP COUNT and the bound on entries whose
	// handlers run at once; with the pipeline, at most three batches are
	// in memory. Default 500: below that, the fixed cost of a batch (read,
	// claim, settle and acknowledgement round trips) shows in throughput
	// (docs/performance.md, "consumer: draining a backlog").
	BatchSize int
	// Block is how long a read waits for new entries. It bounds how late
	// shutdown notices a cancel (go-redis cannot interrupt a blocked read).
	// Default 1s.
	Block time.Duration
	// Concurrency is the number of handlers running at once. Entries of one
	// aggregate_id always run one after another in stream order. Default 8.
	Concurrency int
	// HandlerTimeout bounds one handler attempt. Default 30s.
	HandlerTimeout time.Duration
	// Retry is the in-process retry policy.
	Retry RetryPolicy
	// MaxDeliveries: a handler failure on the MaxDeliveries-th delivery
	// dead-letters the entry with the error. Deliveries that reach no
	// handler verdict (deferred, a dedup store failure, a shutdown) are
	// given back to Redis's counter, so they do not count (ADR-016).
	// Default 5.
	MaxDeliveries int64
	// ReclaimIdle is how long an entry stays pending and idle before this
	// consumer claims it (from a dead consumer, or its own failed ones).
	// Entries in flight here are kept fresh so they are never claimed.
	// Default 1m; must exceed HandlerTimeout.
	ReclaimIdle time.Duration
	// ReclaimInterval is how often idle entries are looked for. Default
	// ReclaimIdle/2.
	ReclaimInterval time.Duration
	// ConsumerIdleTimeout: other consumers of the group idle for longer
	// and without pending entries are removed from the group. Default 1h;
	// negative disables.
	ConsumerIdleTimeout time.Duration
	// DeadLetterStream receives entries that cannot succeed. Default
	// Stream + ":dlq". It must share Stream's hash tag on a cluster.
	DeadLetterStream string
	// StartID is where a new group starts, and where it restarts when the
	// group vanished (NOGROUP): "0" replays the whole stream, "$" takes
	// only new entries. Default "0": nothing already on the stream is
	// skipped (see docs/adr/ADR-010-consumer-semantics.md).
	StartID string
	// DrainTimeout bounds graceful shutdown: after the context is
	// cancelled, handlers in flight get this long to finish. Default 8s,
	// so that the drain, the last acknowledgement and a blocked read fit
	// in the supervisor's default StopTimeout (10s).
	DrainTimeout time.Duration
	// InfoInterval is how often lag and pending are polled. Default 5s.
	InfoInterval time.Duration
	// AlertPolicy is how a legacy schema_version 1 event or a recreated
	// group is surfaced on the consumer's watermark, beside the metrics and
	// alerts that count them under every policy: AlertNotice (the default)
	// shows it on /status and /ready?full=1 and keeps the consumer ready;
	// AlertHold makes the consumer not ready ([readiness.StateAlert]). See
	// docs/adr/ADR-009-multi-brand-envelope.md for the choice and its
	// effect on rollouts and PodDisruptionBudgets.
	AlertPolicy AlertPolicy
	// AlertWindow is how long the notice or hold of AlertPolicy lasts
	// after the last such event. Default 5m.
	AlertWindow time.Duration
	// FailureLimit: after this many consecutive failed reads Serve returns
	// an error so the supervisor restarts it. Default 30.
	FailureLimit int
	// Watermark receives progress; default one named "<Group>@<Stream>"
	// with readiness defaults. Get it with Consumer.Watermark.
	Watermark *readiness.Watermark
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// TracerProvider, when set, gives every entry a process span, a child
	// of its producer's span (OpenTelemetry messaging conventions), which
	// the handler's context carries; the handler-duration histogram then
	// carries the trace ID of sampled spans as exemplars. Nil: no tracing,
	// at no cost.
	TracerProvider trace.TracerProvider
	// Propagator reads the producer's trace context from an entry's
	// fields. Default propagation.TraceContext{} (the envelope's W3C
	// traceparent and tracestate); used only with a TracerProvider.
	Propagator propagation.TextMapPropagator
}

// Validate reports whether [New] would accept c as far as c alone can
// tell: required fields, signs and relations of durations and sizes, the
// alert policy, the handlers against the catalog. It builds nothing and
// calls nothing (New also registers metrics, which can fail on a
// registerer that already has them). The error wraps [ErrInvalidConfig],
// or event.ErrNotDispatchable for a handler of a type the stream does not
// carry.
func (c Config) Validate() error {
	c, err := c.withDefaults()
	if err != nil {
		return err
	}
	return c.checkDispatch()
}

// checkDispatch checks that every handler's type is emitted on the
// stream.
func (c Config) checkDispatch() error {
	types := make([]event.Type, 0, len(c.Handlers)+len(c.BatchHandlers))
	for t := range c.Handlers {
		types = append(types, t)
	}
	for t := range c.BatchHandlers {
		types = append(types, t)
	}
	if err := c.Catalog.CheckDispatch(c.CatalogStream, types); err != nil {
		return fmt.Errorf("consumer %s: %w", c.Group, err)
	}
	return nil
}

// withDefaults returns a copy with defaults filled in and checked.
func (c Config) withDefaults() (Config, error) {
	if c.Client == nil {
		return c, configErr("Client is nil")
	}
	if c.Stream == "" || c.Group == "" {
		return c, configErr("Stream and Group are required")
	}
	if len(c.Handlers) == 0 && len(c.BatchHandlers) == 0 {
		return c, configErr("no Handlers")
	}
	for t, h := range c.Handlers {
		if h == nil {
			return c, configErr("nil handler for %s", t)
		}
	}
	for t, h := range c.BatchHandlers {
		switch _, both := c.Handlers[t]; {
		case h == nil:
			return c, configErr("nil batch handler for %s", t)
		case both:
			return c, configErr("%s has a Handler and a BatchHandler", t)
		}
	}
	if len(c.BatchHandlers) > 0 {
		_, tx := c.Dedup.(dedup.TxBatcher)
		_, leases := c.Dedup.(dedup.Batcher)
		if !tx || leases || c.TxPerEvent {
			return c, configErr("BatchHandlers need a Dedup store that is a dedup.TxBatcher (the PostgreSQL inbox), without TxPerEvent")
		}
	}
	if c.Catalog == nil {
		return c, configErr("Catalog is nil (platform.Catalog() for the platform's streams, or a catalog of your own)")
	}
	if c.CatalogStream == "" {
		s, ok := c.Catalog.StreamByKey(c.Stream)
		if !ok {
			return c, configErr("stream key %q is not in the catalog: set CatalogStream", c.Stream)
		}
		c.CatalogStream = s.Name
	}
	if c.Consumer == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return c, configErr("Consumer unset and no host name: %v", err)
		}
		c.Consumer = h
	}
	setDefault(&c.BatchSize, DefaultBatchSize)
	setDefault(&c.Block, DefaultBlock)
	setDefault(&c.Concurrency, DefaultConcurrency)
	setDefault(&c.HandlerTimeout, DefaultHandlerTimeout)
	setDefault(&c.Retry.Attempts, DefaultRetryAttempts)
	setDefault(&c.Retry.Backoff.Initial, DefaultRetryInitial)
	setDefault(&c.Retry.Backoff.Max, DefaultRetryMax)
	setDefault(&c.MaxDeliveries, DefaultMaxDeliveries)
	setDefault(&c.ReclaimIdle, DefaultReclaimIdle)
	setDefault(&c.ReclaimInterval, c.ReclaimIdle/2)
	setDefault(&c.ConsumerIdleTimeout, DefaultConsumerIdle)
	setDefault(&c.DeadLetterStream, c.Stream+deadLetterSuffix)
	setDefault(&c.StartID, DefaultStartID)
	setDefault(&c.DrainTimeout, DefaultDrainTimeout)
	setDefault(&c.InfoInterval, DefaultInfoInterval)
	setDefault(&c.AlertWindow, DefaultAlertWindow)
	setDefault(&c.AlertPolicy, AlertNotice)
	setDefault(&c.FailureLimit, DefaultFailureLimit)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.BatchSize < 0 || c.Concurrency < 0 || c.MaxDeliveries < 0 || c.Retry.Attempts < 0 || c.FailureLimit < 0:
		return c, configErr("negative size or count")
	case c.Block < 0 || c.HandlerTimeout < 0 || c.ReclaimIdle < 0 || c.ReclaimInterval < 0 ||
		c.DrainTimeout < 0 || c.InfoInterval < 0 || c.AlertWindow < 0 || c.Retry.Backoff.Initial < 0 || c.Retry.Backoff.Max < 0:
		return c, configErr("negative duration")
	case c.Block < time.Millisecond:
		return c, configErr("Block %v is below 1ms (0 would block forever in Redis)", c.Block)
	case c.ReclaimIdle <= c.HandlerTimeout:
		return c, configErr("ReclaimIdle %v must exceed HandlerTimeout %v, or entries in flight could be claimed", c.ReclaimIdle, c.HandlerTimeout)
	case c.DeadLetterStream == c.Stream:
		return c, configErr("DeadLetterStream equals Stream")
	case c.AlertPolicy != "" && c.AlertPolicy != AlertNotice && c.AlertPolicy != AlertHold:
		return c, configErr("AlertPolicy %q is neither %q nor %q", c.AlertPolicy, AlertNotice, AlertHold)
	}
	if _, cluster := c.Client.(*redis.ClusterClient); cluster && hashTag(c.Stream) != hashTag(c.DeadLetterStream) {
		return c, configErr("on a cluster %q and %q must share a hash tag (e.g. events:{wallet} and events:{wallet}:dlq)", c.Stream, c.DeadLetterStream)
	}
	return c, nil
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// hashTag returns the part of key that Redis Cluster hashes: the text
// between the first '{' and the next '}' when non-empty, else the key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}
