package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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
	eventually(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusServiceUnavailable && strings.HasPrefix(body["job/outbox-prune"], "failing: last ") &&
			strings.HasSuffix(body["job/outbox-prune"], "last error: delete published rows: redis: connection refused") &&
			body["service/outbox-prune"] == "OK", fmt.Sprint(code, body)
	})
	if _, failed := job.Health().Runs(); failed < 3 {
		t.Errorf("failed runs = %d", failed)
	}
	failing.Store(false)
	eventually(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusOK, fmt.Sprint(code, body)
	})
	if got := h.counter(t, "headway_job_runs_total", "job", "outbox-prune", "outcome", "failure"); got < 3 {
		t.Errorf("headway_job_runs_total{failure} = %v", got)
	}
	_ = stop()
	var logged int
	for _, r := range h.logs.records(t) {
		if r[AttrJob] == "outbox-prune" && r["level"] == "ERROR" && r[AttrError] == "delete published rows: redis: connection refused" {
			logged++
		}
	}
	if _, failed := job.Health().Runs(); uint64(logged) != failed {
		t.Errorf("%d failure records logged for %d failed runs", logged, failed)
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
	eventually(t, 5*time.Second, func() (bool, string) {
		ok, failed := job.Health().Runs()
		return ok >= 1 && failed == 1, fmt.Sprint(ok, failed)
	})
	if err := job.Health().LastError(); !errors.Is(err, ErrJobPanicked) || !strings.Contains(err.Error(), "index out of range") {
		t.Errorf("LastError = %v", err)
	}
	if got := h.counter(t, "headway_supervisor_panics_total", "service", "reconcile"); got != 1 {
		t.Errorf("panics_total = %v", got)
	}
	_ = stop()
}

// A job that never gets to run successfully is overdue: readiness does not
// wait for the first failure.
func TestJobOverdue(t *testing.T) {
	cfg, h := fastConfig(t)
	stop := start(t, cfg, h)
	block := make(chan struct{})
	_, err := h.tree.AddJob(JobConfig{
		Name: "slow", Interval: 20 * time.Millisecond, Tolerance: 1, RunAtStart: true, Timeout: time.Minute,
		Run: func(ctx context.Context) error {
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
	eventually(t, 5*time.Second, func() (bool, string) {
		_, body := h.ready(t)
		return strings.HasPrefix(body["job/slow"], "overdue: no successful run since start"), fmt.Sprint(body)
	})
	_ = stop() // the run is cut short by shutdown: not recorded as a failure
	close(block)
	if !strings.Contains(h.logs.String(), "job run interrupted by shutdown") {
		t.Errorf("no interruption log:\n%s", h.logs)
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
