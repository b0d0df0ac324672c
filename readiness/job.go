package readiness

import (
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"
)

// JobHealth is the health record of a scheduled job (ADR-003: scheduler-backed
// workers include job-health readiness, not just a process heartbeat). The
// runner calls [JobHealth.Record] after each run; probes and metrics read it.
//
// A job is not ready when its last success (or the start of its clock,
// before the first success) is older than [JobHealth.OverdueAfter]
// ([StateOverdue]), or when its last FailureBound runs
// failed ([StateFailing]). Slack covers the jitter and run time a healthy
// schedule adds to Interval, so a job that misses no run never flaps to
// overdue. The clock starts at [NewJobHealth], or with JobHealthConfig.Deferred at the
// first [JobHealth.Start]. The error of a failed run is kept and shown in the
// reason: it is never swallowed (ADR-004).
//
// All methods are safe for concurrent use; Record and Start take no lock.
type JobHealth struct {
	name      string
	now       func() time.Time
	start     time.Time // origin of the offsets
	interval  time.Duration
	slack     time.Duration
	tolerance float64
	bound     int64

	clockFrom   atomic.Int64 // offset the overdue clock starts at, or never (deferred, not started)
	lastRun     atomic.Int64 // offset of the end of the last run, or never
	lastSuccess atomic.Int64 // offset, or never
	failures    atomic.Int64 // consecutive
	successes   atomic.Uint64
	failed      atomic.Uint64
	lastErr     atomic.Pointer[errBox]
}

// NewJobHealth returns the health record of job cfg.Name with no run, its clock
// started now (with cfg.Deferred: at the first [JobHealth.Start]). Defaults for
// zero fields: Slack 0, Tolerance 2, FailureBound 3, Now time.Now. It
// returns an error wrapping [ErrInvalidConfig] when cfg is invalid (Name
// and a positive Interval are required).
func NewJobHealth(cfg JobHealthConfig) (*JobHealth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	j := &JobHealth{
		name:      cfg.Name,
		now:       cfg.Now,
		start:     cfg.Now(),
		interval:  cfg.Interval,
		slack:     cfg.Slack,
		tolerance: cfg.Tolerance,
		bound:     int64(cfg.FailureBound),
	}
	if cfg.Deferred {
		j.clockFrom.Store(never)
	}
	j.lastRun.Store(never)
	j.lastSuccess.Store(never)
	return j, nil
}

// Name returns the job's name.
func (j *JobHealth) Name() string { return j.name }

// String returns "job/<name>", the name of its check.
func (j *JobHealth) String() string { return "job/" + j.name }

// Interval returns the interval the job is meant to succeed at.
func (j *JobHealth) Interval() time.Duration { return j.interval }

// OverdueAfter returns how old the last success (or, before the first,
// the start of the job's clock) may grow before the job is overdue:
// (Interval + Slack) × Tolerance, or the longest Duration when that does
// not fit in one (the job is then never overdue).
func (j *JobHealth) OverdueAfter() time.Duration { return j.due() }

func (j *JobHealth) offset(t time.Time) int64 { return int64(t.Sub(j.start)) }

// Start starts the job's clock, if it has not started: from now on, a job
// with no success yet becomes overdue after [JobHealth.OverdueAfter]. The runner
// calls it when it first runs; later calls do nothing. Only a job built
// with JobHealthConfig.Deferred needs it (the clock of any other starts at
// NewJobHealth); [JobHealth.Record] starts the clock too.
func (j *JobHealth) Start() { j.startAt(j.offset(j.now())) }

func (j *JobHealth) startAt(off int64) {
	if j.clockFrom.Load() == never {
		j.clockFrom.CompareAndSwap(never, off)
	}
}

// Record records the end of a run: a success when err is nil, otherwise a
// failure whose error is kept for the reason. A success resets the
// consecutive failures. It starts the job's clock if [JobHealth.Start] has not.
func (j *JobHealth) Record(err error) {
	t := j.offset(j.now())
	j.startAt(t)
	j.lastRun.Store(t)
	if err == nil {
		j.lastSuccess.Store(t)
		j.failures.Store(0)
		j.successes.Add(1)
		return
	}
	j.lastErr.Store(&errBox{err})
	j.failures.Add(1)
	j.failed.Add(1)
}

// JobSnapshot is what a [JobHealth] has recorded, as [JobHealth.Snapshot]
// read it (each field atomically, not all at one instant).
type JobSnapshot struct {
	Name string
	// LastRun is the end time of the last run, LastSuccess of the last
	// successful one; zero if none yet.
	LastRun     time.Time
	LastSuccess time.Time
	// Succeeded and Failed count the runs; ConsecutiveFailures the runs
	// in a row that failed.
	Succeeded           uint64
	Failed              uint64
	ConsecutiveFailures int64
	// LastError is the error of the last failed run, nil if none.
	LastError error
}

// Snapshot reads everything the job's health has recorded.
func (j *JobHealth) Snapshot() JobSnapshot {
	return JobSnapshot{
		Name:                j.name,
		LastRun:             j.timeOf(j.lastRun.Load()),
		LastSuccess:         j.timeOf(j.lastSuccess.Load()),
		Succeeded:           j.successes.Load(),
		Failed:              j.failed.Load(),
		ConsecutiveFailures: j.failures.Load(),
		LastError:           j.lastError(),
	}
}

func (j *JobHealth) timeOf(off int64) time.Time {
	if off == never {
		return time.Time{}
	}
	return j.start.Add(time.Duration(off))
}

func (j *JobHealth) lastError() error {
	if b := j.lastErr.Load(); b != nil {
		return b.err
	}
	return nil
}

// Status evaluates the job at its clock's now. See [JobHealth.StatusAt].
func (j *JobHealth) Status() Status { return j.StatusAt(j.now()) }

// StatusAt evaluates the job at now, in this order: failing (the last
// FailureBound runs failed), overdue (no success within
// [JobHealth.OverdueAfter]), ok (a success within that time),
// waiting (no success yet, not due yet, or the clock of a deferred job
// not started yet).
func (j *JobHealth) StatusAt(now time.Time) Status {
	v := j.evaluate(now)
	return Status{Name: j.name, State: v.state, Reason: j.reason(&v)}
}

type jobVerdict struct {
	state       State
	now         int64
	clockFrom   int64
	lastSuccess int64
	failures    int64
}

// due is [JobHealth.OverdueAfter]; its saturation makes a job whose
// interval is too long to count in a Duration never overdue, rather than
// overdue at once from an overflow.
func (j *JobHealth) due() time.Duration {
	gap := j.interval + j.slack
	if gap < j.interval { // both are non-negative: the sum overflowed
		return math.MaxInt64
	}
	d := float64(gap) * j.tolerance
	if d >= 1<<63 { // beyond int64: converting it would be undefined
		return math.MaxInt64
	}
	return time.Duration(d)
}

func (j *JobHealth) evaluate(now time.Time) jobVerdict {
	v := jobVerdict{
		now:         j.offset(now),
		clockFrom:   j.clockFrom.Load(),
		lastSuccess: j.lastSuccess.Load(),
		failures:    j.failures.Load(),
	}
	switch {
	case j.bound > 0 && v.failures >= j.bound:
		v.state = StateFailing
	case v.lastSuccess != never && since(v.now, v.lastSuccess) > j.due():
		v.state = StateOverdue
	case v.lastSuccess != never:
		v.state = StateOK
	case v.clockFrom != never && since(v.now, v.clockFrom) > j.due():
		v.state = StateOverdue
	default:
		v.state = StateWaiting
	}
	return v
}

// appendDue writes how the due time is made, such as
// "(interval 5m0s × tolerance 2 = 10m0s)".
func (j *JobHealth) appendDue(b *strings.Builder) {
	if j.slack == 0 {
		fmt.Fprintf(b, "(interval %s × tolerance %g = %s)", human(j.interval), j.tolerance, human(j.due()))
		return
	}
	fmt.Fprintf(b, "((interval %s + slack %s) × tolerance %g = %s)", human(j.interval), human(j.slack), j.tolerance, human(j.due()))
}

func (j *JobHealth) reason(v *jobVerdict) string {
	var b strings.Builder
	b.WriteString(v.state.String())
	b.WriteString(": ")
	switch v.state {
	case StateFailing:
		fmt.Fprintf(&b, "last %d runs failed (bound %d)", v.failures, j.bound)
		if err := j.lastError(); err != nil {
			fmt.Fprintf(&b, ", last error: %v", err)
		}
	case StateOverdue:
		if v.lastSuccess == never {
			fmt.Fprintf(&b, "no successful run since start %s ago ", human(since(v.now, v.clockFrom)))
		} else {
			fmt.Fprintf(&b, "last success %s ago ", human(since(v.now, v.lastSuccess)))
		}
		j.appendDue(&b)
		if v.failures > 0 {
			fmt.Fprintf(&b, ", %d failed runs since", v.failures)
			if err := j.lastError(); err != nil {
				fmt.Fprintf(&b, ", last error: %v", err)
			}
		}
	case StateOK:
		fmt.Fprintf(&b, "last success %s ago (interval %s)", human(since(v.now, v.lastSuccess)), human(j.interval))
	case StateWaiting:
		if v.failures == 0 {
			b.WriteString("no run yet")
		} else {
			fmt.Fprintf(&b, "no success yet, %d failed runs, last error: %v", v.failures, j.lastError())
		}
		if v.clockFrom == never {
			fmt.Fprintf(&b, ", not started yet (due within %s of the start)", human(j.due()))
		} else {
			fmt.Fprintf(&b, ", started %s ago (due within %s)", human(since(v.now, v.clockFrom)), human(j.due()))
		}
	}
	return b.String()
}

func (j *JobHealth) readyCheck() error {
	v := j.evaluate(j.now())
	if v.state.Ready() {
		return nil
	}
	return &notReadyError{reason: j.reason(&v)}
}
