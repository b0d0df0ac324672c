package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/readiness"
)

// DefaultJobJitter is the default JobConfig.Jitter.
const DefaultJobJitter = 0.1

// JobConfig configures a scheduled [Job]. Name, Run and Interval are
// required; every other zero field means its documented default.
type JobConfig struct {
	// Name of the job: its worker name, log attribute and job_name label.
	Name string
	// Run does one run of the job. It gets a context cancelled at the
	// run's Timeout or at shutdown, and returns nil on success. Its error
	// is recorded, logged and shown in /ready: never swallowed.
	Run func(ctx context.Context) error
	// Interval between the end of one run and the start of the next,
	// before jitter.
	Interval time.Duration
	// Jitter spreads each wait uniformly over Interval × (1 ± Jitter), so
	// replicas do not run in step. Default 0.1; negative: no jitter; at
	// most 1.
	Jitter float64
	// RunAtStart runs the job as soon as it starts, instead of after one
	// interval.
	RunAtStart bool
	// Timeout bounds one run. Default Interval.
	Timeout time.Duration
	// Tolerance and FailureBound decide the job's readiness (see
	// readiness.JobHealthConfig). The longest gap between two successes of a
	// healthy schedule is one jittered wait plus one run:
	// Interval × (1 + Jitter) + Timeout. The job is overdue (not ready) when
	// its last success is older than Tolerance such gaps —
	// (Interval × (1 + Jitter) + Timeout) × Tolerance, so 4.2 × Interval
	// with the defaults — and failing when its last FailureBound runs
	// failed. Tolerance 1 (the least) tolerates no missed run, yet never
	// flaps on a healthy schedule; the default 2 tolerates one. Before its
	// first success, the time counts from when Serve first ran; before
	// that the job is waiting, which is ready (the worker's own check
	// "service/<name>" is pending until then). A Run that ignores its
	// context and overruns Timeout may make the job overdue. Defaults:
	// Tolerance 2, FailureBound 3.
	Tolerance    float64
	FailureBound int
	// Logger receives a record per failed run (Error, with the error) and
	// per successful one (Debug). Default slog.Default(); [Tree.AddJob]
	// passes the tree's.
	Logger *slog.Logger
	// Now is the clock of the job's health (readiness.JobHealthConfig.Now).
	// Default time.Now. The schedule itself uses real timers.
	Now func() time.Time
}

// Validate reports the first invalid field, wrapping [ErrInvalidConfig]. It
// never panics.
func (c JobConfig) Validate() error {
	switch {
	case c.Run == nil:
		return fmt.Errorf("%w: job %q: Run is required", ErrInvalidConfig, c.Name)
	case !(c.Jitter <= 1): // also catches NaN
		return fmt.Errorf("%w: job %q: Jitter %g is above 1", ErrInvalidConfig, c.Name, c.Jitter)
	case c.Timeout < 0:
		return fmt.Errorf("%w: job %q: Timeout %v is negative", ErrInvalidConfig, c.Name, c.Timeout)
	}
	if err := c.withDefaults().health().Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (c JobConfig) withDefaults() JobConfig {
	if c.Jitter == 0 {
		c.Jitter = DefaultJobJitter
	}
	if c.Timeout == 0 {
		c.Timeout = c.Interval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// health returns the configuration of the job's health record, for a
// config with its defaults applied: the slack is what the schedule adds to
// Interval between two successes (the jitter of one wait and one run), and
// the clock starts when Serve first runs.
func (c JobConfig) health() readiness.JobHealthConfig {
	slack := c.Timeout
	if c.Jitter > 0 {
		slack += time.Duration(float64(c.Interval) * c.Jitter)
	}
	return readiness.JobHealthConfig{
		Name: c.Name, Interval: c.Interval, Slack: slack, Tolerance: c.Tolerance,
		FailureBound: c.FailureBound, Deferred: true, Now: c.Now,
	}
}

// Job runs a function on a schedule (an interval with jitter) and records
// every run in its [readiness.JobHealth], so a job that stops succeeding makes the
// process unready (ADR-003) and its error is logged and shown, never
// swallowed (ADR-004). A run that panics is recorded as a failure wrapping
// [ErrJobPanicked], then the panic goes on to the supervisor, which
// restarts the job (counted in headway_supervisor_panics_total).
//
// Job is a suture.Service; add it with [Tree.AddJob] (or [Tree.Add], or any
// suture supervisor). Runs never overlap: the next wait starts when a run
// ends.
type Job struct {
	cfg    JobConfig
	health *readiness.JobHealth
	log    *slog.Logger
}

var _ suture.Service = (*Job)(nil)

// NewJob returns a job that runs nothing until served, with the defaults
// of [JobConfig]; its health is judged as JobConfig.Tolerance says. It
// returns an error wrapping [ErrInvalidConfig] for an invalid cfg.
func NewJob(cfg JobConfig) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	h, err := readiness.NewJobHealth(cfg.health())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &Job{cfg: cfg, health: h, log: cfg.Logger}, nil
}

// String returns the job's name.
func (j *Job) String() string { return j.cfg.Name }

// Health returns the job's health record, read by the probes and metrics.
func (j *Job) Health() *readiness.JobHealth { return j.health }

// next returns the jittered wait before the next run.
func (j *Job) next() time.Duration {
	if j.cfg.Jitter <= 0 {
		return j.cfg.Interval
	}
	f := 1 + j.cfg.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(j.cfg.Interval) * f)
}

// Serve runs the job until ctx is cancelled and returns ctx's error. A run
// in progress at cancellation gets its context cancelled and is waited for.
// The first Serve starts the clock of the job's health ([readiness.JobHealth.Start]);
// a restart does not reset it.
func (j *Job) Serve(ctx context.Context) error {
	j.health.Start()
	wait := j.next()
	if j.cfg.RunAtStart {
		wait = 0
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		j.runOnce(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		timer.Reset(j.next())
	}
}

func (j *Job) runOnce(ctx context.Context) {
	runCtx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
	defer cancel()
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			j.health.Record(fmt.Errorf("%w: %v", ErrJobPanicked, r))
			panic(r) // to the supervisor: logged with its stack, counted, restarted
		}
	}()
	err := j.cfg.Run(runCtx)
	took := time.Since(start)
	if ctx.Err() != nil {
		// Shutdown cut the run short: not a verdict on the job.
		j.log.Info("job run interrupted by shutdown",
			slog.String(AttrJob, j.cfg.Name), slog.Duration("duration", took), slog.Any(AttrError, err))
		return
	}
	j.health.Record(err)
	if err != nil {
		j.log.Error("job run failed",
			slog.String(AttrJob, j.cfg.Name), slog.String(AttrError, err.Error()),
			slog.Int64("consecutive_failures", j.health.Snapshot().ConsecutiveFailures),
			slog.Duration("duration", took))
		return
	}
	j.log.Debug("job run succeeded", slog.String(AttrJob, j.cfg.Name), slog.Duration("duration", took))
}
