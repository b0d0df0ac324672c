package readiness

import (
	"fmt"
	"strconv"
	"time"
)

// State is the verdict of the rules on a [Watermark] or a [JobHealth]. Its String
// form is the lower-case name used in reasons and in the status label of
// the metrics.
type State uint8

// States of a loop ([Watermark]).
const (
	// StateStarting: no progress yet, but the loop started less than one
	// stall window ago. Ready.
	StateStarting State = iota + 1
	// StateProgressing: progress within the stall window. Ready.
	StateProgressing
	// StateIdle: the backlog is known to be zero. Ready however old the
	// last progress is (no lag is never a stall).
	StateIdle
	// StateBehind: progressing, but the backlog kept growing across the
	// whole stall window. Ready: a warning, not a failure.
	StateBehind
	// StateStalled: backlog present or unknown, and no progress within the
	// stall window. Not ready.
	StateStalled
	// StateFailing: consecutive failures reached the failure bound. Not
	// ready.
	StateFailing
	// StateAlert: another component holds the loop not ready until a given
	// time ([Watermark.Alert]). Not ready. A failing or stalled loop shows
	// that state instead: an alert never hides a worse one.
	StateAlert
	// StateWedged: no heartbeat within the liveness window. Neither live
	// nor ready.
	StateWedged
	// StateParked: the loop's supervisor parked it ([Watermark.Park]): the
	// loop is not running — in restart backoff, or stopped for good — so
	// it cannot heartbeat. Not ready, but live: a loop the supervisor
	// holds is not wedged, and restarting the pod would not help.
	StateParked
)

// States of a scheduled job ([JobHealth]). A job may also be [StateFailing].
const (
	// StateWaiting: the job has not succeeded yet, but it is not due yet
	// (or the clock of a deferred job has not started). Ready.
	StateWaiting State = iota + 20
	// StateOK: the last success is recent enough. Ready.
	StateOK
	// StateOverdue: the last success (or the start, if none) is older than
	// [JobHealth.OverdueAfter]. Not ready.
	StateOverdue
)

var stateNames = map[State]string{
	StateStarting:    "starting",
	StateProgressing: "progressing",
	StateIdle:        "idle",
	StateBehind:      "behind",
	StateStalled:     "stalled",
	StateFailing:     "failing",
	StateAlert:       "alert",
	StateWedged:      "wedged",
	StateParked:      "parked",
	StateWaiting:     "waiting",
	StateOK:          "ok",
	StateOverdue:     "overdue",
}

// loopStates lists the states a Watermark can be in, in the order the
// metrics export them.
var loopStates = []State{StateStarting, StateProgressing, StateIdle, StateBehind, StateStalled, StateFailing, StateAlert, StateWedged, StateParked}

// jobStates lists the states a JobHealth can be in, in the order the metrics
// export them.
var jobStates = []State{StateWaiting, StateOK, StateOverdue, StateFailing}

// String returns the lower-case name of the state ("stalled"), or
// "state(N)" for a value that is not a State.
func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Ready reports whether the state lets the component count as ready.
func (s State) Ready() bool {
	switch s {
	case StateStarting, StateProgressing, StateIdle, StateBehind, StateWaiting, StateOK:
		return true
	}
	return false
}

// Live reports whether the state lets the process count as live: every
// state but [StateWedged].
func (s State) Live() bool { return s != StateWedged }

// Status is the evaluated health of one watermark or job: its state and a
// reason a person can act on, such as
// "stalled: backlog 1200, no progress for 45s (window 30s)".
type Status struct {
	Name   string
	State  State
	Reason string
}

// Ready reports whether the status counts as ready.
func (s Status) Ready() bool { return s.State.Ready() }

// Live reports whether the status counts as live.
func (s Status) Live() bool { return s.State.Live() }

// Err returns nil when the status is ready, otherwise an error whose text is
// the reason and which matches [ErrNotReady] with [errors.Is].
func (s Status) Err() error {
	if s.Ready() {
		return nil
	}
	return &notReadyError{reason: s.Reason}
}

// notReadyError is the error of a failing check: its text is exactly the
// reason (that text is what /ready?full=1 shows), and it matches
// ErrNotReady.
type notReadyError struct{ reason string }

func (e *notReadyError) Error() string { return e.reason }
func (e *notReadyError) Unwrap() error { return ErrNotReady }

// NotReady returns an error with text reason that matches [ErrNotReady]. A
// custom check passed to [Probes.AddReadinessCheck] may use it.
func NotReady(reason string) error { return &notReadyError{reason: reason} }

// human formats a duration for a reason: whole seconds from one second up,
// milliseconds below, in the form of [time.Duration.String] ("1h0m0s",
// "45s", "250ms").
func human(d time.Duration) string { return string(appendHuman(nil, d)) }

// appendHuman appends human(d) to b without allocating (when b has room).
func appendHuman(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	if d < time.Second {
		d = d.Round(time.Millisecond)
		if d < time.Second {
			if d == 0 {
				return append(b, "0s"...)
			}
			b = strconv.AppendInt(b, int64(d/time.Millisecond), 10)
			return append(b, "ms"...)
		}
	}
	d = d.Round(time.Second)
	h, m, s := int64(d/time.Hour), int64(d%time.Hour/time.Minute), int64(d%time.Minute/time.Second)
	if h > 0 {
		b = strconv.AppendInt(b, h, 10)
		b = append(b, 'h')
	}
	if h > 0 || m > 0 {
		b = strconv.AppendInt(b, m, 10)
		b = append(b, 'm')
	}
	b = strconv.AppendInt(b, s, 10)
	return append(b, 's')
}
