package readiness

import (
	"fmt"
	"time"
)

// Defaults of [WatermarkConfig] and [JobHealthConfig], used when a field is zero.
const (
	DefaultStallWindow    = 30 * time.Second
	DefaultLivenessWindow = time.Minute
	DefaultFailureBound   = 5
	DefaultJobTolerance   = 2.0
	DefaultJobFailures    = 3
)

// WatermarkConfig configures a [Watermark]. The zero value of every field
// but Name means its documented default.
type WatermarkConfig struct {
	// Name identifies the loop in checks ("loop/<Name>"), reasons and the
	// loop label of metrics. Required; keep it bounded (a stream and group,
	// "relay", …), never an ID.
	Name string
	// StallWindow is how long a loop with backlog (or unknown backlog) may
	// go without progress before it is stalled, and the span over which a
	// growing backlog makes it behind. Default [DefaultStallWindow] (30s).
	StallWindow time.Duration
	// LivenessWindow is how long the loop may go without a heartbeat before
	// it is wedged (not live). It must exceed the longest single step of
	// the loop, including a blocking read. Default [DefaultLivenessWindow]
	// (1m).
	LivenessWindow time.Duration
	// FailureBound is the number of consecutive failures at which the loop
	// is failing (not ready). Default [DefaultFailureBound] (5); negative
	// disables the rule.
	FailureBound int
	// Now is the clock. Default time.Now. Tests inject a fake one.
	Now func() time.Time
}

// Validate reports the first invalid field, wrapping [ErrInvalidConfig]. It
// never panics.
func (c WatermarkConfig) Validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: watermark Name is required", ErrInvalidConfig)
	case c.StallWindow < 0:
		return fmt.Errorf("%w: watermark %q: StallWindow %v is negative", ErrInvalidConfig, c.Name, c.StallWindow)
	case c.LivenessWindow < 0:
		return fmt.Errorf("%w: watermark %q: LivenessWindow %v is negative", ErrInvalidConfig, c.Name, c.LivenessWindow)
	}
	return nil
}

func (c WatermarkConfig) withDefaults() WatermarkConfig {
	if c.StallWindow == 0 {
		c.StallWindow = DefaultStallWindow
	}
	if c.LivenessWindow == 0 {
		c.LivenessWindow = DefaultLivenessWindow
	}
	if c.FailureBound == 0 {
		c.FailureBound = DefaultFailureBound
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// JobHealthConfig configures a [JobHealth]. The zero value of every field but Name and
// Interval means its documented default.
type JobHealthConfig struct {
	// Name identifies the job in checks ("job/<Name>"), reasons and the job_name
	// label of metrics. Required.
	Name string
	// Interval is how often the job is meant to succeed. Required (> 0).
	Interval time.Duration
	// Slack is how much longer than Interval the gap between two successes
	// of a healthy schedule may be: the jitter added to a wait plus the time
	// a run takes (supervisor.Job sets Interval × Jitter + Timeout). Default
	// 0, for a job that records exactly every Interval; must not be
	// negative.
	Slack time.Duration
	// Tolerance is how many of the longest healthy gaps may pass without a
	// success ([JobHealth.OverdueAfter]). With Tolerance 1 a job that
	// misses no run is never overdue; with 2 it may miss one.
	// Default [DefaultJobTolerance] (2); must be at least 1.
	Tolerance float64
	// FailureBound: the job is failing once this many runs in a row have
	// failed. Default [DefaultJobFailures] (3); negative disables the rule.
	FailureBound int
	// Deferred starts the job's clock at the first [JobHealth.Start] (or
	// [JobHealth.Record]) instead of at [NewJobHealth]: until then the job is waiting
	// (ready) however long, so a job built long before its runner starts is
	// not overdue at once. supervisor.Job defers, and starts the clock when
	// its Serve first runs.
	Deferred bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate reports the first invalid field, wrapping [ErrInvalidConfig]. It
// never panics.
func (c JobHealthConfig) Validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: job Name is required", ErrInvalidConfig)
	case c.Interval <= 0:
		return fmt.Errorf("%w: job %q: Interval %v must be positive", ErrInvalidConfig, c.Name, c.Interval)
	case c.Slack < 0:
		return fmt.Errorf("%w: job %q: Slack %v is negative", ErrInvalidConfig, c.Name, c.Slack)
	case c.Tolerance != 0 && !(c.Tolerance >= 1): // also catches NaN
		return fmt.Errorf("%w: job %q: Tolerance %g must be at least 1", ErrInvalidConfig, c.Name, c.Tolerance)
	}
	return nil
}

func (c JobHealthConfig) withDefaults() JobHealthConfig {
	if c.Tolerance == 0 {
		c.Tolerance = DefaultJobTolerance
	}
	if c.FailureBound == 0 {
		c.FailureBound = DefaultJobFailures
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
