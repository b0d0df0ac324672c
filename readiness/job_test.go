package readiness

import (
	"errors"
	"math"
	"testing"
	"time"
)

func newTestJob(t *testing.T) (*JobHealth, *fakeClock) {
	t.Helper()
	clk := newClock()
	j, err := NewJobHealth(JobHealthConfig{Name: "prune", Interval: 5 * time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return j, clk
}

func TestJobRules(t *testing.T) {
	t.Parallel()
	boom := errors.New("delete outbox rows: timeout")
	tests := []struct {
		name   string
		run    func(j *JobHealth, c *fakeClock)
		want   State
		reason string
	}{
		{
			name:   "new job is waiting",
			run:    func(j *JobHealth, c *fakeClock) { c.Advance(time.Minute) },
			want:   StateWaiting,
			reason: "waiting: no run yet, started 1m0s ago (due within 10m0s)",
		},
		{
			name: "a job that never succeeds is overdue after interval × tolerance",
			run: func(j *JobHealth, c *fakeClock) {
				c.Advance(10*time.Minute + time.Second)
			},
			want:   StateOverdue,
			reason: "overdue: no successful run since start 10m1s ago (interval 5m0s × tolerance 2 = 10m0s)",
		},
		{
			name: "recent success is ok",
			run: func(j *JobHealth, c *fakeClock) {
				c.Advance(5 * time.Minute)
				j.Record(nil)
				c.Advance(3 * time.Minute)
			},
			want:   StateOK,
			reason: "ok: last success 3m0s ago (interval 5m0s)",
		},
		{
			name: "job overdue",
			run: func(j *JobHealth, c *fakeClock) {
				j.Record(nil)
				c.Advance(25 * time.Minute)
			},
			want:   StateOverdue,
			reason: "overdue: last success 25m0s ago (interval 5m0s × tolerance 2 = 10m0s)",
		},
		{
			name: "overdue shows the failures since the last success",
			run: func(j *JobHealth, c *fakeClock) {
				j.Record(nil)
				c.Advance(11 * time.Minute)
				j.Record(boom)
			},
			want:   StateOverdue,
			reason: "overdue: last success 11m0s ago (interval 5m0s × tolerance 2 = 10m0s), 1 failed runs since, last error: delete outbox rows: timeout",
		},
		{
			name: "job failing N times",
			run: func(j *JobHealth, c *fakeClock) {
				j.Record(nil)
				for range 3 {
					c.Advance(time.Minute)
					j.Record(boom)
				}
			},
			want:   StateFailing,
			reason: "failing: last 3 runs failed (bound 3), last error: delete outbox rows: timeout",
		},
		{
			name: "failures below the bound with a recent success stay ok",
			run: func(j *JobHealth, c *fakeClock) {
				j.Record(nil)
				j.Record(boom)
				j.Record(boom)
			},
			want: StateOK,
		},
		{
			name: "failures before the first success while not due",
			run: func(j *JobHealth, c *fakeClock) {
				j.Record(boom)
			},
			want:   StateWaiting,
			reason: "waiting: no success yet, 1 failed runs, last error: delete outbox rows: timeout, started 0s ago (due within 10m0s)",
		},
		{
			name: "a success after failing recovers",
			run: func(j *JobHealth, c *fakeClock) {
				for range 5 {
					j.Record(boom)
				}
				j.Record(nil)
			},
			want: StateOK,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j, clk := newTestJob(t)
			tt.run(j, clk)
			st := j.Status()
			if st.State != tt.want {
				t.Fatalf("state = %v (%s), want %v", st.State, st.Reason, tt.want)
			}
			if tt.reason != "" && st.Reason != tt.reason {
				t.Errorf("reason = %q\nwant     %q", st.Reason, tt.reason)
			}
			if err := j.readyCheck(); (err == nil) != tt.want.Ready() {
				t.Errorf("readyCheck() = %v, want ready %v", err, tt.want.Ready())
			}
		})
	}
}

func TestJobReadings(t *testing.T) {
	t.Parallel()
	j, clk := newTestJob(t)
	if snap := j.Snapshot(); !snap.LastRun.IsZero() {
		t.Error("LastRun ok before a run")
	}
	if snap := j.Snapshot(); !snap.LastSuccess.IsZero() {
		t.Error("LastSuccess ok before a run")
	}
	clk.Advance(time.Minute)
	j.Record(nil)
	clk.Advance(time.Minute)
	boom := errors.New("boom")
	j.Record(boom)
	snap := j.Snapshot()
	ok, failed := snap.Succeeded, snap.Failed
	if ok != 1 || failed != 1 || j.Snapshot().ConsecutiveFailures != 1 || !errors.Is(j.Snapshot().LastError, boom) {
		t.Errorf("Runs = %d, %d; consecutive %d; last error %v", ok, failed, j.Snapshot().ConsecutiveFailures, j.Snapshot().LastError)
	}
	if snap := j.Snapshot(); !snap.LastSuccess.Equal(newClock().Now().Add(time.Minute)) {
		t.Errorf("LastSuccess = %v", snap.LastSuccess)
	}
	if snap := j.Snapshot(); !snap.LastRun.Equal(newClock().Now().Add(2 * time.Minute)) {
		t.Errorf("LastRun = %v", snap.LastRun)
	}
	if j.Name() != "prune" || j.String() != "job/prune" || j.Interval() != 5*time.Minute {
		t.Errorf("Name, String, Interval = %q, %q, %v", j.Name(), j.String(), j.Interval())
	}
}

func TestJobConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  JobHealthConfig
		ok   bool
	}{
		{"minimal", JobHealthConfig{Name: "x", Interval: time.Second}, true},
		{"no name", JobHealthConfig{Interval: time.Second}, false},
		{"no interval", JobHealthConfig{Name: "x"}, false},
		{"negative interval", JobHealthConfig{Name: "x", Interval: -time.Second}, false},
		{"tolerance below one", JobHealthConfig{Name: "x", Interval: time.Second, Tolerance: 0.5}, false},
		{"tolerance one", JobHealthConfig{Name: "x", Interval: time.Second, Tolerance: 1}, true},
		{"negative slack", JobHealthConfig{Name: "x", Interval: time.Second, Slack: -time.Second}, false},
		{"slack", JobHealthConfig{Name: "x", Interval: time.Second, Slack: time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
			if _, err := NewJobHealth(tt.cfg); (err == nil) != tt.ok {
				t.Errorf("NewJob() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// Slack covers what a healthy schedule adds to the interval (jitter, run
// time): with Tolerance 1 a job that misses no run is never overdue, and
// it is overdue as soon as the longest healthy gap has passed.
func TestJobSlack(t *testing.T) {
	t.Parallel()
	clk := newClock()
	// A supervisor job: every hour ± 10%, runs of up to an hour.
	j, err := NewJobHealth(JobHealthConfig{Name: "prune", Interval: time.Hour, Slack: 66 * time.Minute, Tolerance: 1, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got := j.OverdueAfter(); got != 126*time.Minute {
		t.Errorf("OverdueAfter = %v, want 2h6m0s", got)
	}
	j.Record(nil)
	// The longest healthy gap: the wait was 1h6m and the run took 1h.
	clk.Advance(126 * time.Minute)
	if st := j.Status(); st.State != StateOK {
		t.Fatalf("at the longest healthy gap: %v %q", st.State, st.Reason)
	}
	j.Record(nil)
	clk.Advance(126*time.Minute + time.Second)
	st := j.Status()
	want := "overdue: last success 2h6m1s ago ((interval 1h0m0s + slack 1h6m0s) × tolerance 1 = 2h6m0s)"
	if st.State != StateOverdue || st.Reason != want {
		t.Errorf("past it: %v %q\nwant %q", st.State, st.Reason, want)
	}
	// Tolerance scales the whole gap.
	j2, err := NewJobHealth(JobHealthConfig{Name: "prune", Interval: time.Hour, Slack: 66 * time.Minute, Tolerance: 2, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got := j2.OverdueAfter(); got != 252*time.Minute {
		t.Errorf("OverdueAfter with tolerance 2 = %v, want 4h12m0s", got)
	}
}

// A deferred job's clock starts at Start (or the first Record): before
// that it is waiting, which is ready, however long it has existed.
func TestJobDeferred(t *testing.T) {
	t.Parallel()
	clk := newClock()
	j, err := NewJobHealth(JobHealthConfig{Name: "prune", Interval: 5 * time.Minute, Deferred: true, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(24 * time.Hour)
	st := j.Status()
	if st.State != StateWaiting || st.Reason != "waiting: no run yet, not started yet (due within 10m0s of the start)" || !st.Ready() {
		t.Fatalf("never started: %v %q", st.State, st.Reason)
	}
	j.Start()
	clk.Advance(10 * time.Minute)
	if st := j.Status(); st.State != StateWaiting || st.Reason != "waiting: no run yet, started 10m0s ago (due within 10m0s)" {
		t.Fatalf("started 10m ago: %v %q", st.State, st.Reason)
	}
	j.Start() // later calls do not restart the clock
	clk.Advance(time.Second)
	if st := j.Status(); st.State != StateOverdue || st.Reason != "overdue: no successful run since start 10m1s ago (interval 5m0s × tolerance 2 = 10m0s)" {
		t.Fatalf("past due: %v %q", st.State, st.Reason)
	}

	// Record starts the clock of a job never started.
	j2, err := NewJobHealth(JobHealthConfig{Name: "prune", Interval: 5 * time.Minute, Deferred: true, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	j2.Record(errors.New("boom"))
	if st := j2.Status(); st.State != StateWaiting || st.Reason != "waiting: no success yet, 1 failed runs, last error: boom, started 0s ago (due within 10m0s)" {
		t.Fatalf("after a failed first run: %v %q", st.State, st.Reason)
	}
	clk.Advance(10*time.Minute + time.Second)
	if st := j2.Status(); st.State != StateOverdue {
		t.Fatalf("past due after the first run: %v %q", st.State, st.Reason)
	}
}

// An interval too long for (Interval + Slack) × Tolerance to fit in a
// Duration saturates OverdueAfter: the job is never overdue, where an
// overflow made it overdue one second after a success.
func TestJobLongIntervalIsNotOverdue(t *testing.T) {
	t.Parallel()
	const year = 8766 * time.Hour
	tests := []struct {
		name      string
		interval  time.Duration
		slack     time.Duration
		tolerance float64
	}{
		{"100 years", 100 * year, 0, 0},
		{"100 years, tolerance 3", 100 * year, 0, 3},
		{"200 years", 200 * year, 0, 0},
		{"longest interval", math.MaxInt64, 0, 0},
		{"longest interval, tolerance 1", math.MaxInt64, 0, 1},
		{"interval plus slack overflows", math.MaxInt64/2 + 1, math.MaxInt64/2 + 1, 1},
		{"infinite tolerance", time.Hour, 0, math.Inf(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			j, err := NewJobHealth(JobHealthConfig{Name: "archive", Interval: tt.interval, Slack: tt.slack, Tolerance: tt.tolerance, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			if got := j.OverdueAfter(); got < tt.interval {
				t.Errorf("OverdueAfter = %v, want at least the interval %v", got, tt.interval)
			}
			j.Record(nil)
			clk.Advance(time.Second)
			if st := j.Status(); st.State != StateOK {
				t.Errorf("a second after a success: %v %q", st.State, st.Reason)
			}
		})
	}
}
