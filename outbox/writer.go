package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/promutil"
	"github.com/headwaylabs/headway/readiness"
)

// DefaultTable is the outbox table used when none is configured. Its name
// is also the LISTEN/NOTIFY channel the writer notifies and the relay
// listens on.
const DefaultTable = "headway_outbox"

var tableNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`)

// ValidTableName reports whether name can name an outbox table: a plain
// lower-case SQL identifier of at most 41 characters (letters, digits and
// underscores, not starting with a digit), safe to splice into statements.
// The writers and the stores of this module reject any other name.
func ValidTableName(name string) bool { return tableNameRE.MatchString(name) }

// DefaultAlertWindow is how long a producer-side brand violation keeps
// Writer.Check failing.
const DefaultAlertWindow = 5 * time.Minute

// WriterConfig configures a [Writer]. Only Catalog is required.
type WriterConfig struct {
	// Table is the outbox table (see [ValidTableName]; the schema
	// comes from the search_path). Default DefaultTable.
	Table string
	// Catalog decides which stream an event type goes to and refuses types
	// that are not emitted. Required: platform.Catalog() for the
	// platform's streams, or a catalog of your own.
	Catalog *event.Catalog
	// Guard runs the producer-side brand check and counts violations.
	// Default brandguard.New with the same Registerer and Logger.
	Guard *brandguard.Guard
	// KeyPrefix is put before every stream key (event.StreamKey of the
	// catalog stream), for tests or a shared Redis. Default none.
	KeyPrefix string
	// AlertWindow is how long a brand violation keeps Check failing.
	// Default 5m.
	AlertWindow time.Duration
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Propagator, when set, writes the trace context of WriteBatch's ctx
	// (the caller's span) into every event that has no TraceParent of its
	// own, so that the spans of the relay and the consumers continue the
	// producer's trace. propagation.TraceContext{} writes W3C traceparent
	// and tracestate, the envelope's fields; keys other than those two are
	// not kept. Nil: the envelopes' trace fields are written as given, and
	// nothing is read from ctx.
	Propagator propagation.TextMapPropagator
}

// envelopeCarrier is an envelope's trace fields as a propagation carrier.
type envelopeCarrier struct{ e *event.Envelope }

func (c envelopeCarrier) Get(key string) string {
	switch key {
	case event.FieldTraceParent:
		return c.e.TraceParent
	case event.FieldTraceState:
		return c.e.TraceState
	}
	return ""
}

func (c envelopeCarrier) Set(key, value string) {
	switch key {
	case event.FieldTraceParent:
		c.e.TraceParent = value
	case event.FieldTraceState:
		c.e.TraceState = value
	}
}

func (c envelopeCarrier) Keys() []string {
	return []string{event.FieldTraceParent, event.FieldTraceState}
}

// Writer writes outbox rows inside the caller's transaction, so that the
// business state and the event commit together. It is safe for concurrent
// use.
type Writer struct {
	table    string
	streams  map[event.Type]string // emitted type -> stream key
	catalog  *event.Catalog
	guard    *brandguard.Guard
	window   time.Duration
	log      *slog.Logger
	written  *prometheus.CounterVec // stream
	refused  *prometheus.CounterVec // reason
	violated atomic.Int64           // unix nanos of the last brand violation
	reason   atomic.Pointer[string]
	prop     propagation.TextMapPropagator
}

// Validate reports whether [NewWriter] would accept c — the table name
// and the catalog — without building a guard or registering metrics. The
// error wraps [ErrInvalidConfig].
func (c WriterConfig) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns c with its table and catalog defaults, checked.
func (c WriterConfig) withDefaults() (WriterConfig, error) {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if !ValidTableName(c.Table) {
		return c, fmt.Errorf("%w: table name %q", ErrInvalidConfig, c.Table)
	}
	if c.Catalog == nil {
		return c, fmt.Errorf("%w: Catalog is nil (platform.Catalog() for the platform's streams, or a catalog of your own)", ErrInvalidConfig)
	}
	if err := c.Catalog.Validate(); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return c, nil
}

// NewWriter returns a Writer. Defaults: Table "headway_outbox", Guard
// brandguard.New (enforce) with the writer's Catalog, no key prefix,
// AlertWindow 5m, no metrics registration, slog.Default().
func NewWriter(cfg WriterConfig) (*Writer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AlertWindow <= 0 {
		cfg.AlertWindow = DefaultAlertWindow
	}
	guard := cfg.Guard
	if guard == nil {
		if guard, err = brandguard.New(brandguard.Config{Catalog: cfg.Catalog, Registerer: cfg.Registerer, Logger: cfg.Logger}); err != nil {
			return nil, err
		}
	}
	w := &Writer{table: cfg.Table, streams: map[event.Type]string{}, catalog: cfg.Catalog, guard: guard,
		window: cfg.AlertWindow, log: cfg.Logger, prop: cfg.Propagator}
	for _, s := range cfg.Catalog.Streams {
		for _, ti := range s.Types {
			if ti.Status == event.StatusEmitted {
				w.streams[ti.Type] = cfg.KeyPrefix + event.StreamKey(s.Name)
			}
		}
	}
	if w.written, err = promutil.Register(cfg.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "headway", Subsystem: "outbox", Name: "written_total",
		Help: "Outbox rows inserted into a transaction by the writer, by stream (counted at insert, before the caller commits).",
	}, []string{"stream"})); err != nil {
		return nil, err
	}
	if w.refused, err = promutil.Register(cfg.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "headway", Subsystem: "outbox", Name: "write_refused_total",
		Help: "Outbox writes refused, by reason (brand_mismatch, not_emitted, invalid_event, too_large).",
	}, []string{"reason"})); err != nil {
		return nil, err
	}
	for _, r := range []string{"brand_mismatch", "not_emitted", "invalid_event", "too_large"} {
		w.refused.WithLabelValues(r) // exists from the start, so increase() sees the first refusal
	}
	return w, nil
}

// Table returns the outbox table name (also the NOTIFY channel).
func (w *Writer) Table() string { return w.table }

// Write writes one event inside tx: see [Writer.WriteBatch].
func (w *Writer) Write(ctx context.Context, tx pgx.Tx, ownerBrand event.BrandID, env event.Envelope) error {
	return w.WriteBatch(ctx, tx, ownerBrand, []event.Envelope{env})
}

// WriteBatch writes events owned by a row of brand ownerBrand inside tx,
// the caller's transaction, and notifies the relay (the notification is
// delivered when tx commits). A zero SchemaVersion is filled with
// event.CurrentSchemaVersion and an empty EventID with [event.NewID], in
// envs (set EventID yourself when you need it, or when a retry of your
// transaction must keep it); with WriterConfig.Propagator, an empty
// TraceParent with ctx's trace context. Every event is checked before anything is
// written, and nothing is written when one fails:
//   - it must encode as the relay encodes it (schema_version 2, a valid
//     brand, …), else ErrInvalidEvent, and fit the size limit of a stream
//     entry, else ErrEventTooLarge (which matches ErrInvalidEvent too);
//   - its type must be emitted on a catalog stream, else ErrNotEmitted;
//   - its envelope brand must equal ownerBrand, else an error matching
//     brandguard.ErrOwnerBrandMismatch; the violation is counted, logged and
//     makes [Writer.Check] fail for AlertWindow (surfaced to supervision).
//
// Many events go in with one COPY. The caller commits or rolls back tx;
// an error from the database leaves tx aborted.
func (w *Writer) WriteBatch(ctx context.Context, tx pgx.Tx, ownerBrand event.BrandID, envs []event.Envelope) error {
	rows, err := w.Prepare(ctx, ownerBrand, envs)
	if err != nil || len(rows) == 0 {
		return err
	}
	if len(rows) == 1 {
		e := &rows[0].Envelope
		if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (event_id, stream, event_type, schema_version, brand_id,
			owner_brand_id, aggregate_id, occurred_at, payload, traceparent, tracestate)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULLIF($10, ''), NULLIF($11, ''))`, w.table),
			e.EventID, rows[0].Stream, string(e.EventType), e.SchemaVersion, int64(e.BrandID), int64(ownerBrand),
			e.AggregateID, e.OccurredAt, string(e.Payload), e.TraceParent, e.TraceState); err != nil {
			return fmt.Errorf("outbox: insert %s: %w", e.EventID, err)
		}
	} else {
		values := make([][]any, len(rows))
		for i := range rows {
			e := &rows[i].Envelope
			values[i] = []any{e.EventID, rows[i].Stream, string(e.EventType), int32(e.SchemaVersion), int64(e.BrandID),
				int64(ownerBrand), e.AggregateID, e.OccurredAt, string(e.Payload), nullIfEmpty(e.TraceParent), nullIfEmpty(e.TraceState)}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{w.table}, []string{"event_id", "stream", "event_type",
			"schema_version", "brand_id", "owner_brand_id", "aggregate_id", "occurred_at", "payload", "traceparent", "tracestate"},
			pgx.CopyFromRows(values)); err != nil {
			return fmt.Errorf("outbox: copy %d events: %w", len(rows), err)
		}
	}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, '')", w.table); err != nil {
		return fmt.Errorf("outbox: notify: %w", err)
	}
	w.Written(rows)
	return nil
}

// Prepare fills the defaults and runs the checks of [Writer.WriteBatch] on
// events owned by a row of brand ownerBrand and returns the rows to insert,
// with their stream keys; refusals are counted and surfaced as WriteBatch
// describes. It is
// for stores other than PostgreSQL (see headway/outbox/sqliteoutbox),
// which insert the rows in their own transaction and then call
// [Writer.Written].
func (w *Writer) Prepare(ctx context.Context, ownerBrand event.BrandID, envs []event.Envelope) ([]Row, error) {
	rows := make([]Row, len(envs))
	var traced event.Envelope // ctx's trace context, with a Propagator
	if w.prop != nil {
		w.prop.Inject(ctx, envelopeCarrier{&traced})
	}
	for i := range envs {
		e := &envs[i]
		if e.TraceParent == "" && traced.TraceParent != "" {
			e.TraceParent, e.TraceState = traced.TraceParent, traced.TraceState
		}
		if e.SchemaVersion == 0 {
			e.SchemaVersion = event.CurrentSchemaVersion
		}
		if e.EventID == "" {
			e.EventID = event.NewID()
		}
		if _, err := encode(*e); err != nil {
			if errors.Is(err, event.ErrEntryTooLarge) {
				w.refused.WithLabelValues("too_large").Inc()
				return nil, fmt.Errorf("%w (%w): %s: %w", ErrEventTooLarge, ErrInvalidEvent, e.EventID, err)
			}
			w.refused.WithLabelValues("invalid_event").Inc()
			return nil, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
		}
		stream, ok := w.streams[e.EventType]
		if !ok {
			w.refused.WithLabelValues("not_emitted").Inc()
			return nil, fmt.Errorf("%w: %s: %s", ErrNotEmitted, e.EventType, w.whyNotEmitted(e.EventType))
		}
		if err := w.guard.CheckProducer(ctx, stream, ownerBrand, *e); err != nil {
			w.refused.WithLabelValues("brand_mismatch").Inc()
			if errors.Is(err, brandguard.ErrOwnerBrandMismatch) {
				msg := "producer brand violation: " + err.Error()
				w.reason.Store(&msg)
				w.violated.Store(time.Now().UnixNano())
			}
			return nil, err
		}
		rows[i] = Row{Stream: stream, OwnerBrand: ownerBrand, Envelope: *e}
	}
	return rows, nil
}

// Written counts rows inserted after [Writer.Prepare].
func (w *Writer) Written(rows []Row) {
	for i := range rows {
		w.written.WithLabelValues(rows[i].Stream).Inc()
	}
}

// encode is the outbox's codec: the relay appends the fields it returns,
// and the writer refuses what it refuses, with the same size limit, so a
// row the writer accepted always encodes.
func encode(e event.Envelope) ([]any, error) { return event.Encode(e) }

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (w *Writer) whyNotEmitted(t event.Type) string {
	for _, s := range w.catalog.Streams {
		if _, ok := s.Type(t); ok {
			return w.catalog.CheckEmit(s.Name, t).Error()
		}
	}
	if w.catalog.IsRetired(t) {
		return "retired: no longer written"
	}
	return "unknown to the catalog"
}

// Check is a readiness check (readiness.Probes.AddReadinessCheck): it fails
// for AlertWindow after a producer-side brand violation, with the
// violation as the reason, so that a producer writing mismatched events is
// surfaced to supervision.
func (w *Writer) Check() error {
	at := w.violated.Load()
	if at == 0 || time.Since(time.Unix(0, at)) > w.window {
		return nil
	}
	reason := "producer brand violation"
	if p := w.reason.Load(); p != nil {
		reason = *p
	}
	return readiness.NotReady(reason)
}
