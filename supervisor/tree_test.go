package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/readiness"
)

// flaky fails at once while failing is set, and otherwise runs until
// cancelled.
type flaky struct {
	failing atomic.Bool
	starts  atomic.Int64
}

func (f *flaky) Serve(ctx context.Context) error {
	f.starts.Add(1)
	if f.failing.Load() {
		return fmt.Errorf("read stream: %w", errRedis)
	}
	<-ctx.Done()
	return ctx.Err()
}

// A service that fails repeatedly drives its worker (only its worker) into
// backoff: /ready answers 503 with the reason, then 200 once it recovers.
func TestBackoffMakesWorkerUnready(t *testing.T) {
	cfg, h := fastConfig(t)
	// A long backoff, so the test can observe it; the recovery waits for
	// it to end.
	cfg.FailureBackoff = 300 * time.Millisecond
	stop := start(t, cfg, h)

	if err := h.tree.Add("relay", blocker{}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		st, _ := h.tree.Status("relay")
		return st.Ready, fmt.Sprint(st)
	})
	f := &flaky{}
	f.failing.Store(true)
	if err := h.tree.Add("consumer", f); err != nil {
		t.Fatal(err)
	}

	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		r := body["service/consumer"]
		return code == http.StatusServiceUnavailable && strings.HasPrefix(r, "backoff: ") &&
			strings.Contains(r, "last error: read stream: redis: connection refused"), fmt.Sprint(code, body)
	})
	code, body := h.ready(t)
	if body["service/relay"] != "OK" || body["supervisor/test"] != "OK" {
		t.Errorf("backoff must be per worker: %d %v", code, body)
	}
	if st, _ := h.tree.Status("consumer"); st.State != ServiceBackoff || st.Ready {
		t.Errorf("Status(consumer) = %+v", st)
	}
	if got := h.counter(t, "headway_supervisor_backoffs_total", "worker", "consumer"); got < 1 {
		t.Errorf("backoffs_total = %v", got)
	}
	if got := h.counter(t, "headway_supervisor_service_status", "worker", "consumer", "status", "backoff"); got != 1 {
		t.Errorf("service_status{backoff} = %v", got)
	}
	if got := h.counter(t, "headway_supervisor_restarts_total", "worker", "consumer", "reason", "error"); got < 4 {
		t.Errorf("restarts_total{error} = %v, want more than the threshold", got)
	}

	f.failing.Store(false)
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusOK, fmt.Sprint(code, body)
	})
	st, _ := h.tree.Status("consumer")
	if st.State != ServiceRunning || st.LastError != "read stream: redis: connection refused" || st.Failures < 4 {
		t.Errorf("after recovery Status = %+v", st)
	}
	if got := h.counter(t, "headway_supervisor_service_ready", "worker", "consumer"); got != 1 {
		t.Errorf("service_ready = %v after recovery", got)
	}

	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Serve() = %v, want context.Canceled", err)
	}
	// The log has the backoff, the resume, and the failures with their
	// error as a structured field.
	var sawBackoff, sawResume, sawError bool
	for _, r := range h.logs.Records(t) {
		if r[AttrService] != "consumer" {
			continue
		}
		switch r[AttrEvent] {
		case EventBackoff:
			sawBackoff = r["level"] == "WARN"
		case EventResume:
			sawResume = true
		case EventTerminate:
			sawError = sawError || r[AttrError] == "read stream: redis: connection refused"
		}
	}
	if !sawBackoff || !sawResume || !sawError {
		t.Errorf("logs: backoff %v, resume %v, error %v\n%s", sawBackoff, sawResume, sawError, h.logs)
	}
	lint(t, h.reg)
}

// A permanent error removes the service; it stays visible, not ready.
func TestPermanentErrorStaysVisible(t *testing.T) {
	cfg, h := fastConfig(t)
	stop := start(t, cfg, h)
	var starts atomic.Int64
	bad := suture.Service(serviceFunc(func(ctx context.Context) error {
		starts.Add(1)
		return fmt.Errorf("consumer group %q: invalid stream name: %w", "rolling", suture.ErrDoNotRestart)
	}))
	if err := h.tree.Add("bad", bad); err != nil {
		t.Fatal(err)
	}
	want := `stopped: returned a permanent error, not restarted: consumer group "rolling": invalid stream name: ` + suture.ErrDoNotRestart.Error()
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusServiceUnavailable && body["service/bad"] == want, fmt.Sprint(code, body)
	})
	// Adding another worker afterwards does not hide it.
	if err := h.tree.Add("good", blocker{}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		st, _ := h.tree.Status("good")
		return st.State == ServiceRunning, fmt.Sprint(st)
	})
	if code, body := h.ready(t); code != http.StatusServiceUnavailable || body["service/bad"] != want {
		t.Errorf("later: %d %v", code, body)
	}
	if got := h.counter(t, "headway_supervisor_service_status", "worker", "bad", "status", "stopped"); got != 1 {
		t.Errorf("service_status{stopped} = %v", got)
	}
	_ = stop()
	if n := starts.Load(); n != 1 {
		t.Errorf("a permanently failed service started %d times, want 1", n)
	}
	if st, _ := h.tree.Status("bad"); st.State != ServiceStopped {
		t.Errorf("after shutdown Status(bad) = %+v", st)
	}
	if !strings.Contains(h.logs.String(), `"event":"permanent_stop"`) {
		t.Errorf("no permanent_stop log:\n%s", h.logs)
	}
}

type serviceFunc func(ctx context.Context) error

func (f serviceFunc) Serve(ctx context.Context) error { return f(ctx) }

// A panic is counted as a restart with reason panic and logged with its
// stack; the service comes back.
func TestPanicIsCountedAndLogged(t *testing.T) {
	cfg, h := fastConfig(t)
	stop := start(t, cfg, h)
	var once atomic.Bool
	svc := serviceFunc(func(ctx context.Context) error {
		if once.CompareAndSwap(false, true) {
			panic("nil map write in handler")
		}
		<-ctx.Done()
		return ctx.Err()
	})
	returned := atomic.Bool{}
	ret := serviceFunc(func(ctx context.Context) error {
		if returned.CompareAndSwap(false, true) {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	})
	if err := h.tree.Add("panicky", svc); err != nil {
		t.Fatal(err)
	}
	if err := h.tree.Add("returns", ret); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		p := h.counter(t, "headway_supervisor_restarts_total", "worker", "panicky", "reason", "panic")
		r := h.counter(t, "headway_supervisor_restarts_total", "worker", "returns", "reason", "returned")
		st, _ := h.tree.Status("panicky")
		return p == 1 && r == 1 && st.Ready && st.Starts == 2, fmt.Sprint(p, r, st)
	})
	if got := h.counter(t, "headway_supervisor_panics_total", "worker", "panicky"); got != 1 {
		t.Errorf("panics_total = %v", got)
	}
	_ = stop()
	var logged bool
	for _, r := range h.logs.Records(t) {
		if r[AttrEvent] == EventPanic && r[AttrService] == "panicky" && r[AttrPanic] == "nil map write in handler" &&
			strings.Contains(fmt.Sprint(r[AttrStack]), "supervisor.TestPanicIsCountedAndLogged") && r["level"] == "ERROR" {
			logged = true
		}
	}
	if !logged {
		t.Errorf("no panic record with the stack:\n%s", h.logs)
	}
	lint(t, h.reg)
}

// Shutdown has a deadline: a service that ignores its context is abandoned
// after StopTimeout, reported, and Serve returns by ShutdownTimeout.
func TestShutdownDeadline(t *testing.T) {
	cfg, h := fastConfig(t)
	cfg.StopTimeout = 100 * time.Millisecond
	cfg.ShutdownTimeout = 300 * time.Millisecond
	stop := start(t, cfg, h)
	release := make(chan struct{})
	exited := make(chan struct{})
	started := make(chan struct{})
	stuck := serviceFunc(func(ctx context.Context) error {
		defer close(exited)
		close(started)
		<-release // ignores ctx
		return nil
	})
	if err := h.tree.Add("stuck", stuck); err != nil {
		t.Fatal(err)
	}
	if err := h.tree.Add("polite", blocker{}); err != nil {
		t.Fatal(err)
	}
	<-started
	begin := time.Now()
	err := stop()
	took := time.Since(begin)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Serve() = %v", err)
	}
	if took > cfg.ShutdownTimeout+time.Second {
		t.Errorf("shutdown took %v, deadline %v", took, cfg.ShutdownTimeout)
	}
	if got := h.counter(t, "headway_supervisor_stop_timeouts_total", "worker", "stuck"); got != 1 {
		t.Errorf("stop_timeouts_total{stuck} = %v", got)
	}
	if got := h.counter(t, "headway_supervisor_stop_timeouts_total", "worker", "polite"); got != 0 {
		t.Errorf("stop_timeouts_total{polite} = %v", got)
	}
	if !strings.Contains(h.logs.String(), `"event":"stop_timeout"`) {
		t.Errorf("no stop_timeout log:\n%s", h.logs)
	}
	if st, _ := h.tree.Status("polite"); st.State != ServiceStopping || st.Ready {
		t.Errorf("after shutdown Status(polite) = %+v", st)
	}
	if err := h.tree.Add("late", blocker{}); !errors.Is(err, ErrStopped) {
		t.Errorf("Add after shutdown = %v, want ErrStopped", err)
	}
	close(release)
	<-exited
}

// blockingHandler is a slog handler whose Handle blocks until released.
type blockingHandler struct{ release <-chan struct{} }

func (h blockingHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h blockingHandler) Handle(context.Context, slog.Record) error { <-h.release; return nil }
func (h blockingHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h blockingHandler) WithGroup(string) slog.Handler             { return h }

// The hook never blocks the supervisor: with a log handler stuck, restarts
// and backoff go on, and the events that do not fit are counted as dropped.
func TestHookNeverBlocks(t *testing.T) {
	cfg, h := fastConfig(t)
	release := make(chan struct{})
	cfg.Logger = slog.New(blockingHandler{release: release})
	cfg.EventQueue = 2
	cfg.FailureThreshold = 1000 // no backoff: restart as fast as possible
	stop := start(t, cfg, h)
	f := &flaky{}
	f.failing.Store(true)
	if err := h.tree.Add("flaky", f); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		return f.starts.Load() >= 50, fmt.Sprint(f.starts.Load(), " starts")
	})
	if got := h.counter(t, "headway_supervisor_log_events_dropped_total"); got < 1 {
		t.Errorf("log_events_dropped_total = %v", got)
	}
	f.failing.Store(false)
	close(release)
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Serve() = %v", err)
	}
}

func TestTreeCheckFollowsLifecycle(t *testing.T) {
	cfg, h := fastConfig(t)
	tree, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.Add("w", blocker{}); err != nil {
		t.Fatal(err)
	}
	code, body := h.ready(t)
	if code != http.StatusServiceUnavailable || body["supervisor/test"] != "pending: the supervisor is not serving yet" ||
		body["service/w"] != "pending: the supervisor is not serving yet" {
		t.Errorf("before Serve: %d %v", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tree.Serve(ctx) }()
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusOK, fmt.Sprint(code, body)
	})
	if err := tree.Serve(ctx); !errors.Is(err, ErrAlreadyServed) || !errors.Is(err, suture.ErrDoNotRestart) {
		t.Errorf("second Serve() = %v", err)
	}
	cancel()
	<-done
	code, body = h.ready(t)
	if code != http.StatusServiceUnavailable || body["supervisor/test"] != "stopped: the supervisor has stopped" {
		t.Errorf("after Serve: %d %v", code, body)
	}
}

func TestAddErrors(t *testing.T) {
	cfg, h := fastConfig(t)
	tree, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.Add("a", blocker{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"duplicate", tree.Add("a", blocker{}), ErrDuplicateName},
		{"empty name", tree.Add("", blocker{}), ErrInvalidConfig},
		{"nil service", tree.Add("b", nil), ErrInvalidConfig},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if _, err := tree.AddJob(JobConfig{Name: "a", Interval: time.Second, Run: func(context.Context) error { return nil }}); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("job named like a service: %v", err)
	}
	// A check named like the next worker's is taken on the probes: that
	// Add is refused by the probes, after the worker was registered.
	if err := h.probes.AddReadinessCheck("service/c", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := tree.Add("c", blocker{}); !errors.Is(err, readiness.ErrDuplicateCheck) {
		t.Errorf("service check taken: %v, want readiness.ErrDuplicateCheck", err)
	}
	// The job check of the next job is taken: neither check is added.
	if err := h.probes.AddReadinessCheck("job/d", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := tree.AddJob(JobConfig{Name: "d", Interval: time.Second, Run: func(context.Context) error { return nil }}); !errors.Is(err, readiness.ErrDuplicateCheck) {
		t.Errorf("job check taken: %v, want readiness.ErrDuplicateCheck", err)
	}
	// A refused add leaves no worker and no check behind it.
	if n := len(tree.Statuses()); n != 1 {
		t.Errorf("%d workers, want 1", n)
	}
	for _, name := range []string{"c", "d"} {
		if _, ok := tree.Status(name); ok {
			t.Errorf("the refused worker %s is still known", name)
		}
		if got := h.seriesOf(t, name); len(got) > 0 {
			t.Errorf("the refused worker %s left series behind: %v", name, got)
		}
	}
	// Only the custom checks service/c and job/d, never a service/d.
	want := []string{"job/d", "service/a", "service/c", "supervisor/test"}
	if got := h.checkNames(t); !slices.Equal(got, want) {
		t.Errorf("checks after refused adds = %v, want %v", got, want)
	}
	// A second tree with the same name on the same probes cannot register
	// its check.
	if _, err := New(cfg); err == nil {
		t.Error("second tree with the same name and probes: no error")
	}
}

// A refused AddJob whose "job/<name>" check is taken rolls everything
// back: no "service/<name>" check stays behind pending forever, the
// process stays ready, and the name can be used again.
func TestAddJobCheckTakenRollsBack(t *testing.T) {
	cfg, h := fastConfig(t)
	start(t, cfg, h)
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		return h.probes.Check(false) == nil, fmt.Sprint(h.probes.Check(false))
	})
	// Another component already reports a job named "reconcile".
	other, err := readiness.NewJobHealth(readiness.JobHealthConfig{Name: "reconcile", Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.probes.AddJob(other); err != nil {
		t.Fatal(err)
	}
	_, err = h.tree.AddJob(JobConfig{Name: "reconcile", Interval: time.Hour, Run: func(context.Context) error { return nil }})
	if !errors.Is(err, readiness.ErrDuplicateCheck) {
		t.Fatalf("AddJob with job/reconcile taken = %v, want readiness.ErrDuplicateCheck", err)
	}
	if err := h.probes.Check(false); err != nil {
		t.Errorf("Check(false) after the refused AddJob = %v: a stale check stayed", err)
	}
	if got, want := h.checkNames(t), []string{"job/reconcile", "supervisor/test"}; !slices.Equal(got, want) {
		t.Errorf("checks = %v, want %v", got, want)
	}
	if _, ok := h.tree.Status("reconcile"); ok {
		t.Error("the refused worker is still known")
	}
	// The name is free again for a worker.
	if err := h.tree.Add("reconcile", blocker{}); err != nil {
		t.Fatalf("Add after the refused AddJob = %v", err)
	}
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusOK && body["service/reconcile"] == "OK", fmt.Sprint(code, body)
	})
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"negative threshold", Config{FailureThreshold: -1}, false},
		{"negative decay", Config{FailureDecay: -time.Second}, false},
		{"negative backoff", Config{FailureBackoff: -time.Second}, false},
		{"negative stop timeout", Config{StopTimeout: -time.Second}, false},
		{"negative shutdown timeout", Config{ShutdownTimeout: -time.Second}, false},
		{"negative queue", Config{EventQueue: -1}, false},
		{"shutdown below stop", Config{StopTimeout: time.Minute, ShutdownTimeout: time.Second}, false},
		{"stop timeout alone moves the shutdown default", Config{StopTimeout: time.Minute}, true},
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
			if _, err := New(tt.cfg); (err == nil) != tt.ok {
				t.Errorf("New() = %v", err)
			}
		})
	}
}
