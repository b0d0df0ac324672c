package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/readiness"
)

// A scheduled job that keeps failing makes /ready fail with its error, is
// logged on every failure, and recovers on success.
func TestJobFailureIsNeverSwallowed(t *testing.T) {
	cfg, h := fastConfig(t)
	stop := start(t, cfg, h)
	var failing atomic.Bool
	failing.Store(true)
	var runs atomic.Int64
	job, err := h.tree.AddJob(JobConfig{
		Name:         "outbox-prune",
		Interval:     10 * time.Millisecond,
		RunAtStart:   true,
		FailureBound: 3,
		Run: func(ctx context.Context) error {
			runs.Add(1)
			if failing.Load() {
				return fmt.Errorf("delete published rows: %w", errRedis)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusServiceUnavailable && strings.HasPrefix(body["job/outbox-prune"], "failing: last ") &&
			strings.HasSuffix(body["job/outbox-prune"], "last error: delete published rows: redis: connection refused") &&
			body["service/outbox-prune"] == "OK", fmt.Sprint(code, body)
	})
	if snap := job.Health().Snapshot(); snap.Failed < 3 {
		t.Errorf("failed runs = %d", snap.Failed)
	}
	failing.Store(false)
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusOK, fmt.Sprint(code, body)
	})
	if got := h.counter(t, "headway_job_runs_total", "job_name", "outbox-prune", "outcome", "failure"); got < 3 {
		t.Errorf("headway_job_runs_total{failure} = %v", got)
	}
	_ = stop()
	var logged int
	for _, r := range h.logs.Records(t) {
		if r[AttrJob] == "outbox-prune" && r["level"] == "ERROR" && r[AttrError] == "delete published rows: redis: connection refused" {
			logged++
		}
	}
	if snap := job.Health().Snapshot(); uint64(logged) != snap.Failed {
		t.Errorf("%d failure records logged for %d failed runs", logged, snap.Failed)
	}
	lint(t, h.reg)
}

// A job whose run panics records the failure, and its runner is restarted.
func TestJobPanic(t *testing.T) {
	cfg, h := fastConfig(t)
	stop := start(t, cfg, h)
	var n atomic.Int64
	job, err := h.tree.AddJob(JobConfig{
		Name: "reconcile", Interval: 10 * time.Millisecond, RunAtStart: true,
		Run: func(ctx context.Context) error {
			if n.Add(1) == 1 {
				panic("index out of range")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		snap := job.Health().Snapshot()
		ok, failed := snap.Succeeded, snap.Failed
		return ok >= 1 && failed == 1, fmt.Sprint(ok, failed)
	})
	if err := job.Health().Snapshot().LastError; !errors.Is(err, ErrJobPanicked) || !strings.Contains(err.Error(), "index out of range") {
		t.Errorf("LastError = %v", err)
	}
	if got := h.counter(t, "headway_supervisor_panics_total", "worker", "reconcile"); got != 1 {
		t.Errorf("panics_total = %v", got)
	}
	_ = stop()
}

// A job that never gets to run successfully is overdue once the longest
// healthy gap has passed since its Serve started; a run cut short by
// shutdown is not recorded as a failure.
func TestJobOverdue(t *testing.T) {
	cfg, h := fastConfig(t)
	stop := start(t, cfg, h)
	clk := newClock()
	block := make(chan struct{})
	started := make(chan struct{})
	var once sync.Once
	job, err := h.tree.AddJob(JobConfig{
		Name: "slow", Interval: time.Minute, Tolerance: 1, RunAtStart: true, Now: clk.Now,
		Run: func(ctx context.Context) error {
			once.Do(func() { close(started) })
			select {
			case <-block:
			case <-ctx.Done():
			}
			return ctx.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the job did not run")
	}
	// Due after (1m + 10% jitter + 1m timeout) × 1 = 2m6s.
	clk.Advance(2*time.Minute + 6*time.Second)
	if _, body := h.ready(t); body["job/slow"] != "OK" {
		t.Errorf("at the longest healthy gap: %v", body)
	}
	clk.Advance(time.Second)
	want := "overdue: no successful run since start 2m7s ago ((interval 1m0s + slack 1m6s) × tolerance 1 = 2m6s)"
	if code, body := h.ready(t); code != http.StatusServiceUnavailable || body["job/slow"] != want {
		t.Errorf("past it: %d %v\nwant job/slow: %s", code, body, want)
	}
	_ = stop() // cuts the run short
	close(block)
	if snap := job.Health().Snapshot(); snap.Succeeded != 0 || snap.Failed != 0 {
		t.Errorf("runs after an interrupted run: %d succeeded, %d failed; want none recorded", snap.Succeeded, snap.Failed)
	}
	if err := job.Health().Snapshot().LastError; err != nil {
		t.Errorf("LastError after an interrupted run = %v", err)
	}
	if !strings.Contains(h.logs.String(), "job run interrupted by shutdown") {
		t.Errorf("no interruption log:\n%s", h.logs)
	}
}

// The gap between two successes of a healthy schedule — one jittered wait
// plus one run up to Timeout — never makes the job overdue, even with
// Tolerance 1; the defaults tolerate one missed run on top.
func TestJobHealthySchedulesNeverOverdue(t *testing.T) {
	t.Parallel()
	run := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name      string
		cfg       JobConfig
		wantAfter time.Duration
	}{
		{"defaults", JobConfig{Interval: time.Minute}, 252 * time.Second},                            // (60+6+60)s × 2
		{"tolerance 1", JobConfig{Interval: time.Minute, Tolerance: 1}, 126 * time.Second},           // 60+6+60
		{"short timeout", JobConfig{Interval: time.Minute, Timeout: time.Second}, 134 * time.Second}, // (60+6+1)s × 2
		{"wide jitter", JobConfig{Interval: time.Minute, Jitter: 0.5, Tolerance: 1}, 150 * time.Second},
		{"no jitter", JobConfig{Interval: time.Minute, Jitter: -1, Tolerance: 1}, 120 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			cfg := tc.cfg
			cfg.Name, cfg.Run, cfg.Now = "x", run, clk.Now
			j, err := NewJob(cfg)
			if err != nil {
				t.Fatal(err)
			}
			h := j.Health()
			if got := h.OverdueAfter(); got != tc.wantAfter {
				t.Errorf("OverdueAfter = %v, want %v", got, tc.wantAfter)
			}
			var longest time.Duration
			for range 1000 {
				longest = max(longest, j.next())
			}
			longest += j.cfg.Timeout // the next run may take up to Timeout
			h.Start()
			h.Record(nil)
			clk.Advance(longest)
			if st := h.Status(); st.State != readiness.StateOK {
				t.Errorf("after the longest healthy gap %v: %v %q", longest, st.State, st.Reason)
			}
			clk.Advance(h.OverdueAfter() - longest + time.Millisecond)
			if st := h.Status(); st.State != readiness.StateOverdue {
				t.Errorf("past OverdueAfter: %v %q", st.State, st.Reason)
			}
		})
	}
}

// The job's health clock starts when its Serve first runs, not at AddJob:
// a tree served long after AddJob does not start out overdue.
func TestJobHealthClockStartsAtServe(t *testing.T) {
	cfg, h := fastConfig(t)
	tree, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	job, err := tree.AddJob(JobConfig{
		Name: "late", Interval: time.Minute, Tolerance: 1, Now: clk.Now,
		Run: func(context.Context) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	if st := job.Health().Status(); st.State != readiness.StateWaiting ||
		st.Reason != "waiting: no run yet, not started yet (due within 2m6s of the start)" {
		t.Fatalf("before Serve: %v %q", st.State, st.Reason)
	}
	if _, body := h.ready(t); body["job/late"] != "OK" || body["service/late"] != "pending: the supervisor is not serving yet" {
		t.Errorf("before Serve: %v", body)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tree.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		st := job.Health().Status()
		return strings.Contains(st.Reason, ", started 0s ago"), st.Reason
	})
	clk.Advance(2*time.Minute + 6*time.Second)
	if st := job.Health().Status(); st.State != readiness.StateWaiting {
		t.Errorf("within the due time of Serve: %v %q", st.State, st.Reason)
	}
	clk.Advance(time.Second)
	if st := job.Health().Status(); st.State != readiness.StateOverdue {
		t.Errorf("past the due time of Serve: %v %q", st.State, st.Reason)
	}
}

func TestJobConfigValidate(t *testing.T) {
	t.Parallel()
	run := func(context.Context) error { return nil }
	tests := []struct {
		name string
		cfg  JobConfig
		ok   bool
	}{
		{"minimal", JobConfig{Name: "x", Interval: time.Second, Run: run}, true},
		{"no run", JobConfig{Name: "x", Interval: time.Second}, false},
		{"no name", JobConfig{Interval: time.Second, Run: run}, false},
		{"no interval", JobConfig{Name: "x", Run: run}, false},
		{"jitter above one", JobConfig{Name: "x", Interval: time.Second, Run: run, Jitter: 1.5}, false},
		{"negative jitter disables", JobConfig{Name: "x", Interval: time.Second, Run: run, Jitter: -1}, true},
		{"negative timeout", JobConfig{Name: "x", Interval: time.Second, Run: run, Timeout: -1}, false},
		{"tolerance below one", JobConfig{Name: "x", Interval: time.Second, Run: run, Tolerance: 0.5}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("%v does not wrap ErrInvalidConfig", err)
			}
			if _, err := NewJob(tt.cfg); (err == nil) != tt.ok {
				t.Errorf("NewJob() = %v", err)
			}
		})
	}
}

func TestJobJitter(t *testing.T) {
	t.Parallel()
	j, err := NewJob(JobConfig{Name: "x", Interval: time.Second, Run: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := time.Hour, time.Duration(0)
	for range 1000 {
		d := j.next()
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 900*time.Millisecond || hi > 1100*time.Millisecond || hi-lo < 100*time.Millisecond {
		t.Errorf("waits in [%v, %v], want spread within 1s ± 10%%", lo, hi)
	}
	j.cfg.Jitter = -1
	if d := j.next(); d != time.Second {
		t.Errorf("no jitter: %v", d)
	}
}
