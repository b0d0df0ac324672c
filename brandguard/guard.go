package brandguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/logkey"
)

// Log attribute keys used by brandguard. Those shared with the consumer,
// supervisor and outbox have the same strings there.
const (
	AttrStream        = logkey.Stream
	AttrConsumer      = logkey.Consumer
	AttrEventID       = logkey.EventID
	AttrEventType     = logkey.EventType
	AttrReason        = logkey.Reason
	AttrMode          = "mode"
	AttrEnvelopeBrand = "envelope_brand"
	AttrTargetBrand   = "target_brand"
	AttrOwnerBrand    = "owner_brand"
)

// Config configures a [Guard]. Only Catalog is required.
type Config struct {
	// Mode for envelope/target brand mismatches. Zero is ModeEnforce; read
	// it from the environment with ModeFromEnv.
	Mode Mode
	// Catalog tells which event types are retired. Required:
	// platform.Catalog() for the platform's streams, or a catalog of your
	// own.
	Catalog *event.Catalog
	// Codec decodes entries in Scope.Decode (its size limit applies).
	Codec event.Codec
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives warnings for legacy entries and observed mismatches;
	// nil means slog.Default(). Payloads are never logged.
	Logger *slog.Logger
}

// Validate reports a configuration error: an unknown Mode, no catalog
// ([ErrNoCatalog]) or an invalid one.
func (c Config) Validate() error {
	if !c.Mode.valid() {
		return fmt.Errorf("%w: %v", ErrInvalidMode, c.Mode)
	}
	if c.Catalog == nil {
		return ErrNoCatalog
	}
	if err := c.Catalog.Validate(); err != nil {
		return fmt.Errorf("brandguard: %w", err)
	}
	return nil
}

// Guard holds the envelope rules of the platform. It is safe for
// concurrent use; build one per process and derive a [Scope] per consumer.
type Guard struct {
	mode    Mode
	catalog *event.Catalog
	codec   event.Codec
	log     *slog.Logger
	m       *metrics
}

// New returns a Guard. Catalog is required. Defaults: Mode enforce, Codec
// the zero event.Codec (1 MiB entries), no metrics registration,
// slog.Default(). It fails on an invalid Config or when a metric clashes
// with a different one already registered; building two Guards against one
// registerer is fine, they share the series.
func New(cfg Config) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Guard{mode: cfg.Mode, catalog: cfg.Catalog, codec: cfg.Codec, log: cfg.Logger}
	if g.log == nil {
		g.log = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer, g.catalog)
	if err != nil {
		return nil, fmt.Errorf("brandguard: %w", err)
	}
	g.m = m
	return g, nil
}

// Mode returns the enforcement mode.
func (g *Guard) Mode() Mode { return g.mode }

// Scope is a Guard bound to one stream and consumer, with its metric series
// looked up once. It is safe for concurrent use.
type Scope struct {
	g                *Guard
	stream, consumer string
	legacy           prometheus.Counter
	mismatch         prometheus.Counter
	accepted         prometheus.Counter
	byReason         map[Reason]prometheus.Counter
}

// Scope returns the guard for entries of stream (the stream key) read by
// consumer (the consumer or group name used in metrics).
func (g *Guard) Scope(stream, consumer string) *Scope {
	s := &Scope{
		g: g, stream: stream, consumer: consumer,
		legacy:   g.m.legacy.WithLabelValues(stream, consumer),
		mismatch: g.m.mismatch.WithLabelValues(stream, consumer, g.mode.String()),
		accepted: g.m.verdicts.WithLabelValues(stream, consumer, ActionAccept.String(), string(ReasonNone)),
		byReason: make(map[Reason]prometheus.Counter, len(Reasons)),
	}
	for _, r := range Reasons {
		a := ActionReject
		if r == ReasonRetiredType {
			a = ActionIgnore
		}
		s.byReason[r] = g.m.verdicts.WithLabelValues(stream, consumer, a.String(), string(r))
	}
	return s
}

// Decode decodes the fields of one entry with the guard's codec and judges
// the result. It never panics: every input ends in accept, ignore or reject
// with a Reason and an Err.
func (s *Scope) Decode(fields map[string]any) (event.Envelope, Verdict) {
	env, err := s.g.codec.Decode(fields)
	if err != nil {
		// A retired type is recognised before anything else: the
		// historical BRAND_AWARE_PUBLISHING_BEGINS sentinels on old
		// backlogs predate today's field rules, and current consumers
		// ignore them whatever else they lack.
		if typ, ok := fields[event.FieldEventType].(string); ok && s.g.catalog.IsRetired(event.Type(typ)) {
			return env, s.reject(ActionIgnore, ReasonRetiredType,
				fmt.Errorf("brandguard: entry of retired type %s (it does not decode: %w)", typ, err))
		}
		return env, s.judgeDecodeError(env, err)
	}
	return env, s.Judge(env)
}

// Judge returns the verdict on a decoded envelope:
//   - a type the catalog retired on every stream (the
//     BRAND_AWARE_PUBLISHING_BEGINS sentinel): ignore;
//   - schema_version 1: count event_legacy_schema_total, reject, and
//     return a Signal for supervision;
//   - schema_version 2 or later (read by the version 2 rules) without a
//     valid brand: reject;
//   - anything else: accept.
//
// The envelope/target comparison needs the handler's entity and is done by
// [Scope.CheckTarget].
func (s *Scope) Judge(env event.Envelope) Verdict {
	if s.g.catalog.IsRetired(env.EventType) {
		return s.reject(ActionIgnore, ReasonRetiredType,
			fmt.Errorf("brandguard: event %s has retired type %s", env.EventID, env.EventType))
	}
	switch {
	case env.SchemaVersion == 1:
		return s.legacyVerdict(env.EventID, fmt.Errorf("%w: event %s (%s)", ErrLegacySchema, env.EventID, env.EventType))
	case env.SchemaVersion < event.MinSchemaVersion:
		return s.reject(ActionReject, ReasonUnsupportedSchema,
			fmt.Errorf("%w: %d", ErrUnsupportedSchema, env.SchemaVersion))
	case env.BrandID == 0:
		return s.reject(ActionReject, ReasonMissingBrand, fmt.Errorf("%w: event %s", ErrMissingBrand, env.EventID))
	case !env.BrandID.Valid():
		return s.reject(ActionReject, ReasonUnparseableBrand,
			fmt.Errorf("%w: event %s has brand %d", ErrUnparseableBrand, env.EventID, env.BrandID))
	}
	s.accepted.Inc()
	return Verdict{Action: ActionAccept}
}

// judgeDecodeError judges an entry that did not decode; env holds the
// identity fields that did.
func (s *Scope) judgeDecodeError(env event.Envelope, err error) Verdict {
	var fe *event.FieldError
	if errors.As(err, &fe) && fe.SchemaVersion == 1 {
		// A version 1 entry is legacy whatever else is wrong with it.
		return s.legacyVerdict(env.EventID, fmt.Errorf("%w: %w", ErrLegacySchema, err))
	}
	switch {
	case errors.Is(err, event.ErrEntryTooLarge):
		return s.reject(ActionReject, ReasonTooLarge, fmt.Errorf("%w: %w", ErrTooLarge, err))
	case errors.Is(err, event.ErrBadSchemaVersion) || (fe != nil && fe.Field == event.FieldSchemaVersion):
		return s.reject(ActionReject, ReasonUnsupportedSchema, fmt.Errorf("%w: %w", ErrUnsupportedSchema, err))
	case fe != nil && fe.Field == event.FieldBrandID && errors.Is(err, event.ErrMissingField):
		return s.reject(ActionReject, ReasonMissingBrand, fmt.Errorf("%w: %w", ErrMissingBrand, err))
	case fe != nil && fe.Field == event.FieldBrandID:
		return s.reject(ActionReject, ReasonUnparseableBrand, fmt.Errorf("%w: %w", ErrUnparseableBrand, err))
	}
	return s.reject(ActionReject, ReasonMalformed, fmt.Errorf("%w: %w", ErrMalformed, err))
}

func (s *Scope) legacyVerdict(eventID string, err error) Verdict {
	s.legacy.Inc()
	s.byReason[ReasonLegacySchema].Inc()
	s.g.log.LogAttrs(context.Background(), slog.LevelWarn, "legacy schema_version 1 event rejected",
		slog.String(AttrStream, s.stream), slog.String(AttrConsumer, s.consumer),
		slog.String(AttrEventID, eventID), slog.String(AttrReason, string(ReasonLegacySchema)))
	return Verdict{Action: ActionReject, Reason: ReasonLegacySchema, Err: err,
		Signal: &Signal{Stream: s.stream, Consumer: s.consumer, Reason: ReasonLegacySchema, EventID: eventID, Err: err}}
}

func (s *Scope) reject(a Action, r Reason, err error) Verdict {
	s.byReason[r].Inc()
	return Verdict{Action: a, Reason: r, Err: err}
}

// CheckTarget compares the envelope brand with the brand of the entity a
// handler is about to apply the event to, and returns the brand to use.
//
// Equal brands return env.BrandID. On a mismatch the count
// headway_brandguard_brand_mismatch_total goes up; in observe mode a warning
// is logged and env.BrandID is returned with a nil error (the envelope
// brand wins); in enforce mode a [*MismatchError] matching
// [ErrBrandMismatch] is returned and the handler must not apply the event.
// A target that is not a positive brand is an error wrapping
// [ErrInvalidBrand] in both modes.
func (s *Scope) CheckTarget(ctx context.Context, env event.Envelope, target event.BrandID) (event.BrandID, error) {
	if !target.Valid() {
		return 0, fmt.Errorf("%w: target brand %d for event %s", ErrInvalidBrand, target, env.EventID)
	}
	if env.BrandID == target {
		return env.BrandID, nil
	}
	s.mismatch.Inc()
	if s.g.mode == ModeObserve {
		s.g.log.LogAttrs(ctx, slog.LevelWarn, "brand mismatch observed: continuing with the envelope brand",
			slog.String(AttrStream, s.stream), slog.String(AttrConsumer, s.consumer),
			slog.String(AttrEventID, env.EventID), slog.String(AttrEventType, string(env.EventType)),
			slog.Int64(AttrEnvelopeBrand, int64(env.BrandID)), slog.Int64(AttrTargetBrand, int64(target)),
			slog.String(AttrMode, ModeObserve.String()))
		return env.BrandID, nil
	}
	s.byReason[ReasonBrandMismatch].Inc()
	return 0, &MismatchError{EventID: env.EventID, EventType: env.EventType, Envelope: env.BrandID, Other: target}
}
