package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/internal/promutil"
	"github.com/headwaylabs/headway/supervisor"
)

// DefaultInterval is the default KeeperConfig.Interval.
const DefaultInterval = 30 * time.Second

// Kinds of stream, the kind label of headway_retention_over_bound.
const (
	KindStream     = "stream"      // a stream read by consumer groups
	KindDeadLetter = "dead_letter" // a dead-letter stream (Policy.DeadLetter)
)

// ErrInvalidConfig is wrapped by the errors of [KeeperConfig.Validate].
var ErrInvalidConfig = errors.New("retention: invalid config")

// Stream is one stream a Keeper trims, and its policy.
type Stream struct {
	// Key is the stream's Redis key (event.StreamKey, event.DeadLetterKey).
	Key    string
	Policy Policy
}

// KeeperConfig configures a [Keeper]. Client and Streams are required.
type KeeperConfig struct {
	// Client runs the trim script.
	Client redis.Scripter
	// Streams to keep bounded, each key once.
	Streams []Stream
	// Interval between two trims of a stream (the job's interval, with
	// the supervisor's jitter). Default DefaultInterval.
	Interval time.Duration
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid field, wrapping [ErrInvalidConfig].
func (c KeeperConfig) Validate() error {
	if c.Client == nil {
		return fmt.Errorf("%w: Client is required", ErrInvalidConfig)
	}
	if len(c.Streams) == 0 {
		return fmt.Errorf("%w: no Streams", ErrInvalidConfig)
	}
	if c.Interval < 0 {
		return fmt.Errorf("%w: Interval %v is negative", ErrInvalidConfig, c.Interval)
	}
	seen := map[string]bool{}
	for _, s := range c.Streams {
		switch {
		case s.Key == "":
			return fmt.Errorf("%w: a stream without a Key", ErrInvalidConfig)
		case seen[s.Key]:
			return fmt.Errorf("%w: stream %q given twice", ErrInvalidConfig, s.Key)
		}
		if err := s.Policy.Validate(); err != nil {
			return fmt.Errorf("%w: stream %q: %w", ErrInvalidConfig, s.Key, err)
		}
		seen[s.Key] = true
	}
	return nil
}

// Status is a stream's retention as its latest trim left it.
type Status struct {
	Stream
	// Result of the latest successful trim; zero before the first.
	Result Result
	// At is when that trim ended; zero before the first.
	At time.Time
	// Err is the latest trim's error, nil when it succeeded.
	Err error
}

// Keeper keeps streams bounded: one scheduled job per stream ([Keeper.Jobs])
// trims it with [Trim] and its policy, and records what it found in the
// metrics headway_retention_*:
//
//   - stream_length{stream} and oldest_entry_age_seconds{stream}, after
//     the trim;
//   - trimmed_entries_total{stream}: entries no group needed any more;
//   - trimmed_unread_entries_total{stream}: entries removed past the
//     maximums before a group acknowledged them (Policy.TrimUnread): lost;
//   - held_entries{stream,group}: what the stream keeps only for its
//     slowest group (that group's pending and undelivered entries), one
//     series per stream, for the group that holds it now;
//   - over_bound{stream,kind}: 1 while the stream is longer than
//     Policy.MaxLength or older than Policy.MaxAge;
//   - max_length{stream} and max_age_seconds{stream}: the bounds, where set.
//
// A job that stops succeeding makes the process unready and alerts, as
// every job does (readiness.JobHealth). A Keeper is safe for concurrent use.
type Keeper struct {
	cfg KeeperConfig
	log *slog.Logger
	m   *metrics

	trims  map[string]*sync.Mutex // per stream: one trim at a time, recorded in order
	mu     sync.Mutex
	status map[string]Status
	held   map[string]string // stream -> group of its held_entries series
	over   map[string]bool
}

// NewKeeper returns a Keeper of cfg's streams, its metrics registered, or
// an error wrapping [ErrInvalidConfig] (or the registration's error).
func NewKeeper(cfg KeeperConfig) (*Keeper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	k := &Keeper{cfg: cfg, log: cfg.Logger, m: m, status: map[string]Status{}, trims: map[string]*sync.Mutex{},
		held: map[string]string{}, over: map[string]bool{}}
	for _, s := range cfg.Streams {
		k.status[s.Key] = Status{Stream: s}
		k.trims[s.Key] = new(sync.Mutex)
		if s.Policy.MaxLength > 0 {
			m.maxLength.WithLabelValues(s.Key).Set(float64(s.Policy.MaxLength))
		}
		if s.Policy.MaxAge > 0 {
			m.maxAge.WithLabelValues(s.Key).Set(s.Policy.MaxAge.Seconds())
		}
		m.trimmed.WithLabelValues(s.Key)
		m.unread.WithLabelValues(s.Key)
		m.over.WithLabelValues(s.Key, kind(s.Policy)).Set(0)
	}
	return k, nil
}

func kind(p Policy) string {
	if p.DeadLetter {
		return KindDeadLetter
	}
	return KindStream
}

// JobName returns the name of the job that trims stream key:
// "retention:<key>".
func JobName(key string) string { return "retention:" + key }

// Jobs returns one job per stream, named [JobName], each trimming its
// stream every Interval ([Keeper.Trim]); add them with
// supervisor.Tree.AddJob (service.Service.AddRetention does).
func (k *Keeper) Jobs() []supervisor.JobConfig {
	jobs := make([]supervisor.JobConfig, 0, len(k.cfg.Streams))
	for _, s := range k.cfg.Streams {
		jobs = append(jobs, supervisor.JobConfig{
			Name:       JobName(s.Key),
			Interval:   k.cfg.Interval,
			RunAtStart: true,
			Logger:     k.log,
			Run: func(ctx context.Context) error {
				_, err := k.Trim(ctx, s.Key)
				return err
			},
		})
	}
	return jobs
}

// Trim trims stream key, one of the Keeper's, by its policy now, and
// records the result in the metrics and the status. The error of a failed
// trim is returned and kept in the status.
func (k *Keeper) Trim(ctx context.Context, key string) (Result, error) {
	one, ok := k.trims[key]
	if !ok {
		return Result{}, fmt.Errorf("retention: stream %q is not one of the keeper's", key)
	}
	one.Lock() // a later trim's result is recorded after an earlier one's
	defer one.Unlock()
	k.mu.Lock()
	st := k.status[key]
	k.mu.Unlock()
	r, err := Trim(ctx, k.cfg.Client, key, st.Policy)
	k.mu.Lock()
	defer k.mu.Unlock()
	st = k.status[key]
	if err != nil {
		st.Err = err
		k.status[key] = st
		return r, err
	}
	st.Result, st.At, st.Err = r, time.Now(), nil
	k.status[key] = st
	k.record(st)
	return r, nil
}

// record sets the metrics from a successful trim and logs what an
// operator must know: entries trimmed unread (every time) and a stream
// going over or back under its bound (once each way). k.mu is held.
func (k *Keeper) record(st Status) {
	key, r, p := st.Key, st.Result, st.Policy
	k.m.length.WithLabelValues(key).Set(float64(r.Length))
	k.m.oldestAge.WithLabelValues(key).Set(r.OldestAge.Seconds())
	k.m.trimmed.WithLabelValues(key).Add(float64(r.Trimmed))
	k.m.unread.WithLabelValues(key).Add(float64(r.TrimmedUnread))
	if g, ok := k.held[key]; ok && g != r.HeldBy {
		k.m.held.DeleteLabelValues(key, g)
		delete(k.held, key)
	}
	if r.HeldBy != "" {
		k.m.held.WithLabelValues(key, r.HeldBy).Set(float64(r.HeldPending + max(r.HeldLag, 0)))
		k.held[key] = r.HeldBy
	}
	over := 0.0
	if r.OverBound {
		over = 1
	}
	k.m.over.WithLabelValues(key, kind(p)).Set(over)

	attrs := []any{slog.String("stream", key), slog.Int64("length", r.Length),
		slog.Duration("oldest_age", r.OldestAge), slog.String("held_by", r.HeldBy)}
	if r.TrimmedUnread > 0 {
		k.log.Error("retention trimmed entries a group had not acknowledged (Policy.TrimUnread): lost to that group",
			append(attrs, slog.Int64("trimmed_unread", r.TrimmedUnread))...)
	}
	switch {
	case r.OverBound && !k.over[key]:
		k.log.Warn("stream over its retention bound: a group holds entries it has not acknowledged",
			append(attrs, slog.Int64("held_pending", r.HeldPending), slog.Int64("held_lag", r.HeldLag),
				slog.Int64("max_length", p.MaxLength), slog.Duration("max_age", p.MaxAge))...)
	case !r.OverBound && k.over[key]:
		k.log.Info("stream back within its retention bound", attrs...)
	default:
		k.log.Debug("stream trimmed", append(attrs, slog.Int64("trimmed", r.Trimmed))...)
	}
	k.over[key] = r.OverBound
}

// Status returns every stream's status, in the order of KeeperConfig.Streams.
func (k *Keeper) Status() []Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]Status, 0, len(k.cfg.Streams))
	for _, s := range k.cfg.Streams {
		out = append(out, k.status[s.Key])
	}
	return out
}

type metrics struct {
	length, oldestAge, maxLength, maxAge *prometheus.GaugeVec // stream
	trimmed, unread                      *prometheus.CounterVec
	held                                 *prometheus.GaugeVec // stream, group
	over                                 *prometheus.GaugeVec // stream, kind
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "headway", Subsystem: "retention", Name: name, Help: help}
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts(opts(name, help)), append([]string{"stream"}, labels...))
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), []string{"stream"})
	}
	m := &metrics{
		length:    gauge("stream_length", "Entries in the stream after its latest trim."),
		oldestAge: gauge("oldest_entry_age_seconds", "Age of the stream's oldest entry after its latest trim, from its ID; 0 when empty."),
		maxLength: gauge("max_length", "The stream's retention bound on length (Policy.MaxLength), where set."),
		maxAge:    gauge("max_age_seconds", "The stream's retention bound on the age of its oldest entry (Policy.MaxAge), where set."),
		trimmed:   counter("trimmed_entries_total", "Entries trimmed that no consumer group needed any more."),
		unread:    counter("trimmed_unread_entries_total", "Entries trimmed past the stream's bound before a consumer group acknowledged them (Policy.TrimUnread): lost to that group."),
		held:      gauge("held_entries", "Entries the stream keeps for its slowest group, the one named: its pending and undelivered entries.", "group"),
		over:      gauge("over_bound", "1 while the stream, after its latest trim, is longer than its MaxLength or its oldest entry older than its MaxAge.", "kind"),
	}
	var err error
	for _, g := range []**prometheus.GaugeVec{&m.length, &m.oldestAge, &m.maxLength, &m.maxAge, &m.held, &m.over} {
		if err == nil {
			*g, err = promutil.Register(reg, *g)
		}
	}
	for _, c := range []**prometheus.CounterVec{&m.trimmed, &m.unread} {
		if err == nil {
			*c, err = promutil.Register(reg, *c)
		}
	}
	return m, err
}
