package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/internal/logkey"
)

// Attribute keys of the supervision log records, shared with the packages
// that log about the same services.
const (
	AttrSupervisor = "supervisor"        // name of the tree
	AttrService    = "service"           // worker name
	AttrJob        = "job"               // scheduled job name
	AttrEvent      = "event"             // what happened (see below)
	AttrError      = logkey.Error        // error text
	AttrFailures   = "failures"          // suture's decayed failure count
	AttrThreshold  = "failure_threshold" // the threshold it is compared to
	AttrRestarting = "restarting"        // restarted at once (false: paused by backoff)
	AttrPanic      = "panic"             // the panic value
	AttrStack      = "stack"             // the stack of a panic
	AttrBackoff    = "backoff"           // the configured backoff
)

// Values of AttrEvent.
const (
	EventTerminate   = "terminate"
	EventPanic       = "panic"
	EventBackoff     = "backoff"
	EventResume      = "resume"
	EventStopTimeout = "stop_timeout"
)

// logEvent is a supervision event waiting to be logged.
type logEvent struct {
	ev     suture.Event
	worker string // "" when the event is not about a worker
}

// hook is the EventHook of the whole tree (suture copies the root's hook
// into every child supervisor added to it). It runs on a supervisor's own
// goroutine, or for EventStopTimeout on another one, so it must be safe for
// concurrent use and must never block: it updates atomics and counters
// (parking and unparking a worker's watermark among them), then hands the
// event to the logging goroutine without waiting. It never calls Add or
// Remove.
func (t *Tree) hook(e suture.Event) {
	var w *worker
	switch ev := e.(type) {
	case suture.EventServiceTerminate:
		if w = t.workerOf(ev.Supervisor); w != nil {
			if ev.Err == nil {
				w.failed("returned without error", ev.CurrentFailures)
				w.restartsReturned.Inc()
			} else {
				w.failed(fmt.Sprint(ev.Err), ev.CurrentFailures)
				w.restartsError.Inc()
			}
		}
	case suture.EventServicePanic:
		if w = t.workerOf(ev.Supervisor); w != nil {
			w.failed("panic: "+ev.PanicMsg, ev.CurrentFailures)
			w.restartsPanic.Inc()
			w.panics.Inc()
		}
	case suture.EventBackoff:
		if w = t.workerOf(ev.Supervisor); w != nil {
			w.backoffSince.Store(time.Now().UnixNano())
			w.backoff.Store(true)
			w.park(parkBackoff)
			w.backoffs.Inc()
		}
	case suture.EventResume:
		if w = t.workerOf(ev.Supervisor); w != nil {
			w.backoff.Store(false)
			w.unpark()
		}
	case suture.EventStopTimeout:
		if w = t.workerOf(ev.Supervisor); w != nil {
			w.stopTimeouts.Inc()
		}
	}
	le := logEvent{ev: e}
	if w != nil {
		le.worker = w.name
	}
	select {
	case t.events <- le:
	default:
		t.metrics.dropped.Inc()
	}
}

// workerOf maps an event's supervisor to its worker: each worker has its
// own child supervisor, so the pointer identifies it even though every
// child shares the root's hook. Nil for the root itself.
func (t *Tree) workerOf(s *suture.Supervisor) *worker {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.bySup[s]
}

// logLoop logs the queued events until quit is closed, then logs what is
// still queued and returns.
func (t *Tree) logLoop(quit <-chan struct{}) {
	for {
		select {
		case le := <-t.events:
			t.logEvent(le)
		case <-quit:
			for {
				select {
				case le := <-t.events:
					t.logEvent(le)
				default:
					return
				}
			}
		}
	}
}

func (t *Tree) logEvent(le logEvent) {
	ctx := context.Background()
	attrs := []slog.Attr{slog.String(AttrSupervisor, t.cfg.Name)}
	service := func(name string) slog.Attr {
		if le.worker != "" {
			name = le.worker
		}
		return slog.String(AttrService, name)
	}
	switch ev := le.ev.(type) {
	case suture.EventServiceTerminate:
		attrs = append(attrs, service(ev.ServiceName), slog.String(AttrEvent, EventTerminate),
			slog.Any(AttrError, ev.Err), slog.Float64(AttrFailures, ev.CurrentFailures),
			slog.Float64(AttrThreshold, ev.FailureThreshold), slog.Bool(AttrRestarting, ev.Restarting))
		msg := "service failed: restarting"
		if !ev.Restarting {
			msg = "service failed: restart paused by backoff"
		}
		if ev.Err == nil {
			msg = "service returned without error: restarting"
		}
		t.log.LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
	case suture.EventServicePanic:
		attrs = append(attrs, service(ev.ServiceName), slog.String(AttrEvent, EventPanic),
			slog.String(AttrPanic, ev.PanicMsg), slog.String(AttrStack, ev.Stacktrace),
			slog.Float64(AttrFailures, ev.CurrentFailures), slog.Float64(AttrThreshold, ev.FailureThreshold),
			slog.Bool(AttrRestarting, ev.Restarting))
		t.log.LogAttrs(ctx, slog.LevelError, "service panicked: restarting", attrs...)
	case suture.EventBackoff:
		attrs = append(attrs, service(ev.SupervisorName), slog.String(AttrEvent, EventBackoff),
			slog.Duration(AttrBackoff, t.cfg.FailureBackoff))
		t.log.LogAttrs(ctx, slog.LevelWarn, "service failing too often: restarts paused, not ready", attrs...)
	case suture.EventResume:
		attrs = append(attrs, service(ev.SupervisorName), slog.String(AttrEvent, EventResume))
		t.log.LogAttrs(ctx, slog.LevelInfo, "service backoff over: restarting", attrs...)
	case suture.EventStopTimeout:
		attrs = append(attrs, service(ev.ServiceName), slog.String(AttrEvent, EventStopTimeout),
			slog.Duration("timeout", t.cfg.StopTimeout))
		t.log.LogAttrs(ctx, slog.LevelError, "service did not stop in time: abandoned", attrs...)
	default:
		t.log.Info("supervision event", slog.String(AttrSupervisor, t.cfg.Name), slog.String("detail", le.ev.String()))
	}
}
