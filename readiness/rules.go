package readiness

import (
	"strconv"
	"time"
)

// loopVerdict is one evaluation of a Watermark: the state and the readings
// it was based on, kept so the reason is formatted only when someone asks
// (a ready check formats nothing).
type loopVerdict struct {
	state      State
	now        int64
	heartbeat  int64
	progress   int64
	idleAt     int64
	backlog    int64
	runStart   int64
	runSince   int64
	failures   int64 // failed iterations since the last success
	work       int64 // failed work items since the last progress
	workAt     int64 // offset of the last failed work item, or never
	retrying   int64
	alertUntil int64
	liveFrom   int64   // offset of the last Unpark, or never
	parked     *string // the park reason, nil when not parked
}

// Status evaluates the rules at the watermark's clock's now. See
// [Watermark.StatusAt].
func (w *Watermark) Status() Status { return w.StatusAt(w.now()) }

// StatusAt evaluates the rules at now, in this order:
//
//  1. parked: its supervisor holds the loop ([Watermark.Park]): live, not
//     ready — or failing (below) when its failures are at the bound, so a
//     loop that its supervisor restarts and backs off through a dependency
//     outage stays failing throughout (its reason ends in "; parked: …");
//  2. wedged: no heartbeat within LivenessWindow (counted from the start
//     before the first heartbeat, and from the last [Watermark.Unpark]
//     when that is later): neither live nor ready;
//  3. failing: consecutive failed iterations ([Watermark.Fail]), or failed
//     work items with no progress since ([Watermark.FailWork]), at or past
//     FailureBound: not ready;
//  4. stalled: backlog present or unknown, no progress within StallWindow
//     (and none of the ready states below holds): not ready;
//  5. alert: held by [Watermark.Alert] until a time after now: not ready.
//     It comes after failing and stalled, so a warning about the data
//     never hides a loop that does not move;
//  6. progressing: progress within StallWindow: ready; behind (a warning,
//     still ready) when in addition the backlog is known, above zero, and
//     has grown without falling once for at least StallWindow;
//  7. idle: backlog known to be zero: ready, however old the last progress
//     (Burrow's rule: no lag is never a stall); also ready while the loop
//     was idle less than StallWindow ago (backlog that just appeared is not
//     a stall yet);
//  8. starting: never progressed nor idle, started less than StallWindow
//     ago, or not progressed since its supervisor ran it again
//     ([Watermark.Unpark]) less than StallWindow ago: ready.
//
// So a loop's state is the worst of its conditions: wedged, failing,
// stalled, alert, behind, then the healthy ones. A notice
// ([Watermark.Notice]) never changes the state: it is appended to the
// reason.
//
// It reads atomics only and is safe to call from any goroutine.
func (w *Watermark) StatusAt(now time.Time) Status {
	v := w.evaluate(now)
	return Status{Name: w.name, State: v.state, Reason: w.reason(&v)}
}

func (w *Watermark) evaluate(now time.Time) loopVerdict {
	// parked before liveFrom: Unpark stores liveFrom and then clears
	// parked, so a reader that sees the loop unparked sees its new
	// liveness window too.
	parked := w.parked.Load()
	v := loopVerdict{
		now:        w.offset(now),
		parked:     parked,
		liveFrom:   w.liveFrom.Load(),
		progress:   w.progress.Load(),
		idleAt:     w.idleAt.Load(),
		backlog:    w.backlog.Load(),
		runStart:   w.runStart.Load(),
		runSince:   w.runSince.Load(),
		failures:   w.consecutiveFailures(),
		work:       consecutive(&w.workTotal, &w.workBase),
		workAt:     w.workAt.Load(),
		retrying:   w.retrying.Load(),
		alertUntil: w.alertUntil.Load(),
	}
	v.heartbeat = max(w.heartbeat.Load(), v.progress)
	v.state = w.judge(&v)
	return v
}

func since(now, off int64) time.Duration {
	if off == never {
		off = 0 // the start
	}
	return time.Duration(now - off)
}

func (w *Watermark) judge(v *loopVerdict) State {
	failing := w.failureBound > 0 && (v.failures >= w.failureBound || w.workFailing(v))
	if v.parked != nil {
		// Parked after failing (a supervisor's backoff after its reads
		// failed): still failing, so a dependency outage reads as one
		// failing state through the restarts and backoffs, not as
		// parked in between. Parked loops are never wedged.
		if failing {
			return StateFailing
		}
		return StateParked
	}
	if since(v.now, max(v.heartbeat, v.liveFrom)) > w.livenessWindow {
		return StateWedged
	}
	if failing {
		return StateFailing
	}
	s := w.judgeProgress(v)
	// An alert hold is a warning about the data (a legacy event, a
	// recreated group): it never hides a worse state, so it is judged after
	// stalled and before the ready states.
	if s != StateStalled && v.alertUntil != never && v.now < v.alertUntil {
		return StateAlert
	}
	return s
}

// workFailing reports whether failed work items make the loop failing:
// at the bound with no progress since, and still current — items wait for
// a retry, or the last failed within the stall window.
func (w *Watermark) workFailing(v *loopVerdict) bool {
	return v.work >= w.failureBound && (v.retrying > 0 || since(v.now, v.workAt) <= w.stallWindow)
}

// judgeProgress judges a loop that is neither parked, wedged nor failing
// by its progress and backlog.
func (w *Watermark) judgeProgress(v *loopVerdict) State {
	if v.progress != never && since(v.now, v.progress) <= w.stallWindow {
		if w.behind(v) {
			return StateBehind
		}
		return StateProgressing
	}
	if v.backlog == 0 {
		return StateIdle
	}
	if v.idleAt != never && since(v.now, max(v.idleAt, v.progress)) <= w.stallWindow {
		return StateIdle
	}
	if v.progress == never && v.idleAt == never && since(v.now, never) <= w.stallWindow {
		return StateStarting
	}
	if w.restarted(v) {
		return StateStarting
	}
	return StateStalled
}

// restarted reports whether the loop's supervisor ran it again
// ([Watermark.Unpark]) less than a stall window ago and it has not
// progressed since: like a loop that just started, it gets one window to
// show progress before stale readings from before its backoff make it
// stalled.
func (w *Watermark) restarted(v *loopVerdict) bool {
	return v.liveFrom != never && v.progress < v.liveFrom && since(v.now, v.liveFrom) <= w.stallWindow
}

func (w *Watermark) behind(v *loopVerdict) bool {
	return v.backlog != backlogUnknown && v.backlog > 0 &&
		v.runSince != never && since(v.now, v.runSince) >= w.stallWindow &&
		v.backlog > v.runStart
}

func (v *loopVerdict) appendBacklog(b []byte) []byte {
	if v.backlog == backlogUnknown {
		b = append(b, "backlog unknown"...)
	} else {
		b = append(b, "backlog "...)
		b = strconv.AppendInt(b, v.backlog, 10)
	}
	return v.appendRetrying(b)
}

// appendRetrying appends ", retrying n" when work items wait for a retry.
func (v *loopVerdict) appendRetrying(b []byte) []byte {
	if v.retrying <= 0 {
		return b
	}
	b = append(b, ", retrying "...)
	return strconv.AppendInt(b, v.retrying, 10)
}

// reason formats the human reason for v. Examples:
//
//	stalled: backlog 1200, no progress for 45s (window 30s)
//	failing: 7 consecutive failures (bound 5), last error: dial tcp: connection refused
//
// It appends to a stack buffer and allocates only the result (and the
// position or error text when it shows them): /ready formats one reason
// per failing loop on every request.
func (w *Watermark) reason(v *loopVerdict) string {
	var arr [160]byte
	b := append(arr[:0], v.state.String()...)
	b = append(b, ": "...)
	switch v.state {
	case StateParked:
		b = append(b, *v.parked...)
	case StateWedged:
		if v.liveFrom > v.heartbeat {
			b = append(b, "no heartbeat since unparked "...)
			b = appendHuman(b, since(v.now, v.liveFrom))
			b = append(b, " ago"...)
		} else if v.heartbeat == never {
			b = append(b, "no heartbeat since start "...)
			b = appendHuman(b, since(v.now, never))
			b = append(b, " ago"...)
		} else {
			b = append(b, "no heartbeat for "...)
			b = appendHuman(b, since(v.now, v.heartbeat))
		}
		b = append(b, " (liveness window "...)
		b = appendHuman(b, w.livenessWindow)
		b = append(b, ')')
	case StateAlert:
		reason := "(no reason)"
		if r := w.alertReason.Load(); r != nil {
			reason = *r
		}
		b = append(b, reason...)
		b = append(b, " (held for "...)
		b = appendHuman(b, time.Duration(v.alertUntil-v.now))
		b = append(b, " more)"...)
	case StateFailing:
		if v.failures >= w.failureBound {
			b = strconv.AppendInt(b, v.failures, 10)
			b = append(b, " consecutive failures (bound "...)
		} else {
			b = strconv.AppendInt(b, v.work, 10)
			b = append(b, " work items failed with no progress since (bound "...)
		}
		b = strconv.AppendInt(b, w.failureBound, 10)
		b = append(b, ')')
		b = v.appendRetrying(b)
		if err := w.lastError(); err != nil {
			b = append(b, ", last error: "...)
			b = append(b, err.Error()...)
		}
		if v.parked != nil {
			b = append(b, "; parked: "...)
			b = append(b, *v.parked...)
		}
	case StateProgressing:
		b = append(b, "last progress "...)
		b = appendHuman(b, since(v.now, v.progress))
		b = append(b, " ago"...)
		if p := w.pos.load(); p != "" {
			b = append(b, " at "...)
			b = append(b, p...)
		}
		b = append(b, ", "...)
		b = v.appendBacklog(b)
	case StateBehind:
		b = append(b, "backlog grew from "...)
		b = strconv.AppendInt(b, v.runStart, 10)
		b = append(b, " to "...)
		b = strconv.AppendInt(b, v.backlog, 10)
		b = append(b, " over "...)
		b = appendHuman(b, since(v.now, v.runSince))
		b = append(b, " while progressing (window "...)
		b = appendHuman(b, w.stallWindow)
		b = append(b, ')')
		b = v.appendRetrying(b)
	case StateIdle:
		if v.backlog == 0 {
			b = append(b, "no backlog, "...)
			if v.retrying > 0 {
				b = append(b, "retrying "...)
				b = strconv.AppendInt(b, v.retrying, 10)
				b = append(b, ", "...)
			}
		} else {
			b = append(b, "caught up "...)
			b = appendHuman(b, since(v.now, v.idleAt))
			b = append(b, " ago, "...)
			b = v.appendBacklog(b)
			b = append(b, " since (window "...)
			b = appendHuman(b, w.stallWindow)
			b = append(b, "), "...)
		}
		if v.progress == never {
			b = append(b, "no progress since start"...)
		} else {
			b = append(b, "last progress "...)
			b = appendHuman(b, since(v.now, v.progress))
			b = append(b, " ago"...)
		}
	case StateStarting:
		if w.restarted(v) {
			b = append(b, "restarted "...)
			b = appendHuman(b, since(v.now, v.liveFrom))
			b = append(b, " ago after being parked, no progress since (window "...)
		} else {
			b = append(b, "no progress yet, started "...)
			b = appendHuman(b, since(v.now, never))
			b = append(b, " ago (window "...)
		}
		b = appendHuman(b, w.stallWindow)
		b = append(b, "), "...)
		b = v.appendBacklog(b)
	case StateStalled:
		b = v.appendBacklog(b)
		switch {
		case v.progress == never && v.idleAt == never:
			b = append(b, ", no progress since start "...)
			b = appendHuman(b, since(v.now, never))
			b = append(b, " ago"...)
		case v.idleAt > v.progress:
			b = append(b, ", no progress since caught up "...)
			b = appendHuman(b, since(v.now, v.idleAt))
			b = append(b, " ago"...)
		default:
			b = append(b, ", no progress for "...)
			b = appendHuman(b, since(v.now, v.progress))
		}
		b = append(b, " (window "...)
		b = appendHuman(b, w.stallWindow)
		b = append(b, ')')
	}
	if notice, ok := w.activeNotice(v.now); ok {
		b = append(b, "; notice: "...)
		b = append(b, notice...)
		b = append(b, " (for "...)
		b = appendHuman(b, time.Duration(w.noticeUntil.Load()-v.now))
		b = append(b, " more)"...)
	}
	return string(b)
}

// readyCheck is the /ready check of the loop: an in-memory evaluation that
// formats a reason only when the loop is not ready.
func (w *Watermark) readyCheck() error {
	v := w.evaluate(w.now())
	if v.state.Ready() {
		return nil
	}
	return &notReadyError{reason: w.reason(&v)}
}
