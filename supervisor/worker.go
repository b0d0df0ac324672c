package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/readiness"
)

// ServiceState is the supervision state of one worker, tracked from
// suture's events (suture has no query API).
type ServiceState uint8

// Service states.
const (
	// ServicePending: added, not started yet (the tree is not serving, or
	// is starting it). Not ready.
	ServicePending ServiceState = iota + 1
	// ServiceRunning: started and not in backoff. Ready. A service that
	// failed below the threshold is restarted at once and stays running.
	ServiceRunning
	// ServiceBackoff: it failed more often than FailureThreshold allows;
	// its restarts are paused for FailureBackoff. Not ready.
	ServiceBackoff
	// ServiceStopped: it returned a permanent error (wrapping
	// suture.ErrDoNotRestart) and was removed. It stays visible, not
	// ready, for as long as the process runs.
	ServiceStopped
	// ServiceStopping: the tree is shutting down. Not ready.
	ServiceStopping
)

var serviceStates = []ServiceState{ServicePending, ServiceRunning, ServiceBackoff, ServiceStopped, ServiceStopping}

// String returns the lower-case name of the state.
func (s ServiceState) String() string {
	switch s {
	case ServicePending:
		return "pending"
	case ServiceRunning:
		return "running"
	case ServiceBackoff:
		return "backoff"
	case ServiceStopped:
		return "stopped"
	case ServiceStopping:
		return "stopping"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// ServiceStatus is a snapshot of one worker's supervision state.
type ServiceStatus struct {
	Name  string
	State ServiceState
	Ready bool
	// Reason says why the worker is not ready, or describes it when it is.
	Reason string
	// Starts counts the times Serve was entered; Failures the times it
	// ended unexpectedly (error, nil or panic).
	Starts, Failures uint64
	// LastError is the text of the last failure ("" if none).
	LastError string
	// Loop is the name of the watermark the worker reports into (its
	// Watermark method), "" when it has none.
	Loop string
}

// worker is the state of one supervised service: its own child supervisor
// (so backoff is per worker) and what the hook learned from the events.
// Every field the hook writes is atomic: the hook runs on the supervisor's
// goroutine and must not wait.
type worker struct {
	name string
	tree *Tree
	sup  *suture.Supervisor
	job  *readiness.JobHealth // nil for plain services
	wm   *readiness.Watermark // nil unless the service is a WatermarkReporter

	starts       atomic.Uint64
	failures     atomic.Uint64
	backoff      atomic.Bool
	backoffSince atomic.Int64  // unix nanos
	curFailures  atomic.Uint64 // math.Float64bits of suture's decayed count
	lastErr      atomic.Pointer[string]
	stopped      atomic.Pointer[string] // the permanent error, once removed

	restartsError, restartsReturned, restartsPanic prometheus.Counter
	panics, backoffs, stopTimeouts                 prometheus.Counter
}

func (w *worker) status() ServiceStatus {
	st := ServiceStatus{Name: w.name, Starts: w.starts.Load(), Failures: w.failures.Load()}
	if w.wm != nil {
		st.Loop = w.wm.Name()
	}
	if e := w.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	cfg := &w.tree.cfg
	switch {
	case w.stopped.Load() != nil:
		st.State = ServiceStopped
		st.Reason = "stopped: returned a permanent error, not restarted: " + *w.stopped.Load()
	case w.tree.state.Load() >= treeStopping:
		st.State = ServiceStopping
		st.Reason = "stopping: the supervisor is shutting down"
	case w.backoff.Load():
		st.State = ServiceBackoff
		since := time.Since(time.Unix(0, w.backoffSince.Load())).Round(time.Millisecond)
		st.Reason = fmt.Sprintf("backoff: %.1f recent failures exceed the threshold %g, restarts paused for %v so far (backoff %v plus jitter)",
			math.Float64frombits(w.curFailures.Load()), cfg.FailureThreshold, since, cfg.FailureBackoff)
		if st.LastError != "" {
			st.Reason += "; last error: " + st.LastError
		}
	case w.tree.state.Load() == treeNew:
		st.State = ServicePending
		st.Reason = "pending: the supervisor is not serving yet"
	case st.Starts == 0:
		st.State = ServicePending
		st.Reason = "pending: not started yet"
	default:
		st.State = ServiceRunning
		st.Ready = true
		st.Reason = fmt.Sprintf("running: started %d times, %d failures", st.Starts, st.Failures)
	}
	return st
}

// check is the worker's readiness check: in-memory reads only.
func (w *worker) check() error {
	if st := w.status(); !st.Ready {
		return readiness.NotReady(st.Reason)
	}
	return nil
}

// Park reasons of a worker's watermark; [readiness.Watermark.Park] shows
// them as "parked: <reason>".
const (
	parkPending = "service not started yet"
	parkBackoff = "service in backoff"
	parkStopped = "service stopped: " // + the permanent error
)

// park holds the worker's watermark (if any) out of liveness while
// the worker is not running. Lock-free: the hook calls it.
func (w *worker) park(reason string) {
	if w.wm != nil {
		w.wm.Park(reason)
	}
}

// unpark releases the watermark when the worker runs again, unless it was
// stopped for good. Lock-free: the hook calls it.
func (w *worker) unpark() {
	if w.wm != nil && w.stopped.Load() == nil {
		w.wm.Unpark()
	}
}

// failed records an unexpected end reported by the hook.
func (w *worker) failed(errText string, current float64) {
	w.failures.Add(1)
	w.curFailures.Store(math.Float64bits(current))
	w.lastErr.Store(&errText)
}

// service wraps a worker's service: its String is the worker's name (so
// suture's events name the worker), and its Serve records starts and
// permanent errors, which suture reports through no event.
type service struct {
	w     *worker
	inner suture.Service
}

var _ suture.Service = (*service)(nil)

func (s *service) String() string { return s.w.name }

func (s *service) Serve(ctx context.Context) error {
	s.w.starts.Add(1)
	s.w.unpark()
	err := s.inner.Serve(ctx)
	switch {
	case errors.Is(err, suture.ErrTerminateSupervisorTree) && !errors.Is(err, suture.ErrDoNotRestart):
		// suture is about to stop every worker, which takes up to
		// ShutdownTimeout and sends no event: the tree is going down now.
		s.w.tree.stopping()
	case ctx.Err() == nil && errors.Is(err, suture.ErrDoNotRestart):
		text := err.Error()
		s.w.lastErr.Store(&text)
		s.w.stopped.Store(&text)
		s.w.park(parkStopped + text)
		s.w.tree.log.Error("service stopped permanently: not restarted",
			slog.String(AttrSupervisor, s.w.tree.cfg.Name),
			slog.String(AttrService, s.w.name),
			slog.String(AttrEvent, "permanent_stop"),
			slog.String(AttrError, text))
	}
	return err
}
