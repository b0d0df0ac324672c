package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwaylabs/headway/internal/logkey"
	"github.com/headwaylabs/headway/internal/promutil"
)

// backlogGauges are the gauges of a table's backlog: set by the relay as
// it runs and by an [Observer], which share them when built against one
// registerer, so they stay true while the relay is down.
type backlogGauges struct {
	rows, oldest, parked, measured prometheus.Gauge
}

func registerBacklogGauges(reg prometheus.Registerer, table string) (backlogGauges, error) {
	labels := prometheus.Labels{"table": table}
	gauge := func(name, help string) (prometheus.Gauge, error) {
		return promutil.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "headway", Subsystem: "outbox",
			Name: name, Help: help, ConstLabels: labels}))
	}
	var g backlogGauges
	var errs [4]error
	g.rows, errs[0] = gauge("backlog_rows", "Unpublished rows.")
	g.oldest, errs[1] = gauge("oldest_unpublished_age_seconds", "Age of the oldest unpublished row.")
	g.parked, errs[2] = gauge("parked_rows", "Rows parked in the table now, whichever relay parked them.")
	g.measured, errs[3] = gauge("backlog_measured_timestamp_seconds",
		"Unix time the backlog gauges were last measured (by the relay or an observer); stale when neither measures.")
	if err := errors.Join(errs[:]...); err != nil {
		return g, fmt.Errorf("outbox: %w", err)
	}
	return g, nil
}

// set records a measurement taken at now.
func (g backlogGauges) set(b Backlog, now time.Time) {
	g.rows.Set(float64(b.Rows))
	g.oldest.Set(b.Oldest.Seconds())
	g.parked.Set(float64(b.Parked))
	g.measured.Set(float64(now.UnixNano()) / 1e9)
}

// DefaultObserveInterval is the default [ObserverConfig.Interval].
const DefaultObserveInterval = 15 * time.Second

// ObserverConfig configures an [Observer].
type ObserverConfig struct {
	// Store is the outbox table to measure. Required.
	Store Store
	// Interval between measurements. Default 15s.
	Interval time.Duration
	// OpTimeout bounds each measurement. Default 10s.
	OpTimeout time.Duration
	// Registerer receives the backlog gauges (shared with a relay of the
	// same table on the same registerer); nil registers nothing.
	Registerer prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports a nil Store and negative durations, wrapping
// [ErrInvalidConfig].
func (c ObserverConfig) Validate() error {
	if c.Store == nil {
		return fmt.Errorf("%w: Store is nil", ErrInvalidConfig)
	}
	if c.Interval < 0 || c.OpTimeout < 0 {
		return fmt.Errorf("%w: negative duration", ErrInvalidConfig)
	}
	return nil
}

// Observer measures an outbox table's backlog — unpublished rows, the age
// of the oldest, parked rows — every Interval and exports it in the same
// gauges as the relay (headway_outbox_backlog_rows,
// headway_outbox_oldest_unpublished_age_seconds,
// headway_outbox_parked_rows, headway_outbox_backlog_measured_timestamp_seconds).
// The relay measures only while it runs: in its supervisor's backoff, or
// crash-looping, its gauges would freeze at their last value (often 0)
// while rows pile up, and HeadwayOutboxBacklogTooOld could not fire. Run
// an Observer beside the relay, as a worker of its own, so the age of the
// oldest row is measured whether the relay runs or not. It only reads.
type Observer struct {
	cfg    ObserverConfig
	gauges backlogGauges
	log    *slog.Logger
}

// NewObserver returns an Observer of cfg.Store. It returns an error when
// Store is nil, a duration is negative, or the gauges cannot be
// registered.
func NewObserver(cfg ObserverConfig) (*Observer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultObserveInterval
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g, err := registerBacklogGauges(cfg.Registerer, cfg.Store.Table())
	if err != nil {
		return nil, err
	}
	return &Observer{cfg: cfg, gauges: g, log: cfg.Logger.With(slog.String(attrTable, cfg.Store.Table()))}, nil
}

// String names the observer in logs and supervision trees.
func (o *Observer) String() string { return "outbox observer " + o.cfg.Store.Table() }

// Serve measures the backlog every Interval until ctx is cancelled, then
// returns ctx's error. A measurement that fails is logged and leaves the
// gauges as they were; headway_outbox_backlog_measured_timestamp_seconds
// then ages, which HeadwayOutboxBacklogUnmeasured alerts on.
func (o *Observer) Serve(ctx context.Context) error {
	t := time.NewTicker(o.cfg.Interval)
	defer t.Stop()
	for {
		o.measure(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (o *Observer) measure(ctx context.Context) {
	mctx, cancel := context.WithTimeout(ctx, o.cfg.OpTimeout)
	defer cancel()
	b, err := o.cfg.Store.Backlog(mctx)
	if err != nil {
		if ctx.Err() == nil {
			o.log.Warn("measuring the outbox backlog failed", slog.String(logkey.Error, err.Error()))
		}
		return
	}
	o.gauges.set(b, time.Now())
}
