package supervisor

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/readiness"
)

// Defaults of [Config], used when a field is zero.
const (
	DefaultName             = "headway"
	DefaultFailureThreshold = 5
	DefaultFailureDecay     = 30 * time.Second
	DefaultFailureBackoff   = 15 * time.Second
	DefaultStopTimeout      = 10 * time.Second
	DefaultShutdownMargin   = 5 * time.Second
	DefaultEventQueue       = 256
)

// Config configures a [Tree]. The zero value works: every zero field means
// its documented default.
type Config struct {
	// Name of the root supervisor, used in logs and in the tree's check
	// "supervisor/<Name>". Default "headway".
	Name string
	// Logger receives the supervision events (structured, see the Attr*
	// keys). Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the supervisor metrics (docs/metrics.md); nil
	// registers nothing. Trees built against the same registerer share
	// their metrics, so their worker names must differ: [Tree.Add] refuses
	// a name another such tree already uses ([ErrDuplicateName]), which
	// would otherwise export duplicate headway_supervisor_service_* series
	// and make the registry's Gather fail.
	Registerer prometheus.Registerer
	// Probes, when set, gets a readiness check per worker
	// ("service/<name>"), one for the tree ("supervisor/<Name>") and the
	// job health of every job added with [Tree.AddJob]. Nil: no checks.
	Probes *readiness.Probes

	// FailureThreshold: a worker whose decayed failure count exceeds it is
	// paused for FailureBackoff (suture's rule, applied per worker).
	// Default 5.
	FailureThreshold float64
	// FailureDecay is the half-life of a worker's failure count. Default
	// 30s.
	FailureDecay time.Duration
	// FailureBackoff is how long a worker's restarts are paused once past
	// the threshold, before jitter. Default 15s.
	FailureBackoff time.Duration
	// BackoffJitter adds jitter to FailureBackoff. Nil: suture's default
	// (uniform in [FailureBackoff, 1.5×FailureBackoff)), one instance per
	// worker. A value set here is shared by every worker's supervisor and
	// must be safe for concurrent use (suture.NoJitter is).
	BackoffJitter suture.Jitter

	// StopTimeout is how long each worker gets to return from Serve once
	// its context is cancelled, before it is reported as a stop timeout and
	// abandoned. Default 10s.
	StopTimeout time.Duration
	// ShutdownTimeout is the deadline of the whole tree's shutdown: Serve
	// returns at most this long after its context is cancelled. Default
	// StopTimeout + 5s; it must not be below StopTimeout.
	ShutdownTimeout time.Duration
	// EventQueue is how many supervision events may wait to be logged. The
	// event hook never blocks: past this, events are counted as dropped
	// (their metrics and readiness effects are never dropped). Default 256.
	EventQueue int
}

// Validate reports the first invalid field, wrapping [ErrInvalidConfig]. It
// never panics.
func (c Config) Validate() error {
	switch {
	case !(c.FailureThreshold >= 0): // also catches NaN
		return fmt.Errorf("%w: FailureThreshold %g is negative", ErrInvalidConfig, c.FailureThreshold)
	case c.FailureDecay < 0:
		return fmt.Errorf("%w: FailureDecay %v is negative", ErrInvalidConfig, c.FailureDecay)
	case c.FailureBackoff < 0:
		return fmt.Errorf("%w: FailureBackoff %v is negative", ErrInvalidConfig, c.FailureBackoff)
	case c.StopTimeout < 0:
		return fmt.Errorf("%w: StopTimeout %v is negative", ErrInvalidConfig, c.StopTimeout)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("%w: ShutdownTimeout %v is negative", ErrInvalidConfig, c.ShutdownTimeout)
	case c.EventQueue < 0:
		return fmt.Errorf("%w: EventQueue %d is negative", ErrInvalidConfig, c.EventQueue)
	}
	d := c.withDefaults()
	if d.ShutdownTimeout < d.StopTimeout {
		return fmt.Errorf("%w: ShutdownTimeout %v is below StopTimeout %v", ErrInvalidConfig, d.ShutdownTimeout, d.StopTimeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FailureThreshold == 0 {
		c.FailureThreshold = DefaultFailureThreshold
	}
	if c.FailureDecay == 0 {
		c.FailureDecay = DefaultFailureDecay
	}
	if c.FailureBackoff == 0 {
		c.FailureBackoff = DefaultFailureBackoff
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = c.StopTimeout + DefaultShutdownMargin
	}
	if c.EventQueue == 0 {
		c.EventQueue = DefaultEventQueue
	}
	return c
}
