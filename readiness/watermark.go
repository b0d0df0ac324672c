package readiness

import (
	"math"
	"sync/atomic"
	"time"
)

// never marks a time that has not happened yet.
const never = math.MinInt64

// backlogUnknown marks a backlog that cannot be measured.
const backlogUnknown = math.MinInt64

// lagUnknown marks a lag that has not been measured, or cannot be.
const lagUnknown = math.MinInt64

// Watermark is what a loop reports about itself and what the rules judge:
// heartbeat (the loop iterated), progress (its position advanced or a unit
// of work finished), backlog (work known to be waiting, or unknown),
// consecutive failures with the last error, an optional alert that holds
// the loop not ready, and whether its supervisor has parked it
// ([Watermark.Park]).
//
// The loop calls the update methods ([Watermark.Heartbeat],
// [Watermark.Progress], [Watermark.SetBacklog], [Watermark.Succeed], …);
// probes, metrics and the supervisor call the read methods
// ([Watermark.Status], [Watermark.Snapshot]). All methods are safe for
// concurrent use. Updates never block, take no lock and do not allocate,
// except [Watermark.Fail] (one small box for the error) and
// [Watermark.Alert] (a copy of the reason when it changes).
//
// Times are kept as offsets from the watermark's creation, read from its
// clock: with the default clock they use Go's monotonic reading, so a step
// of the wall clock neither stalls nor revives a loop.
type Watermark struct {
	name           string
	now            func() time.Time
	start          time.Time
	stallWindow    time.Duration
	livenessWindow time.Duration
	failureBound   int64

	heartbeat     atomic.Int64 // offset of the last heartbeat, or never
	progress      atomic.Int64 // offset of the last progress, or never
	progressTotal atomic.Uint64
	workDone      atomic.Uint64 // units of work reported by Progress and ProgressBy
	pos           position

	backlog  atomic.Int64 // or backlogUnknown
	idleAt   atomic.Int64 // offset of the last zero backlog, or never
	runStart atomic.Int64 // backlog when it last fell (start of a growth run)
	runSince atomic.Int64 // offset when it last fell, or never
	lag      atomic.Int64 // nanoseconds, or lagUnknown

	// Consecutive failures are counted as a total and a base: the total
	// when they were last reset. A reset moves the base up to the total it
	// read before the event that resets them, so a failure recorded at the
	// same moment is never lost (it stays counted) and two resets never
	// undo each other.
	failuresTotal atomic.Uint64 // failed iterations (Fail)
	failBase      atomic.Uint64 // failuresTotal at the last Succeed or Progress
	workTotal     atomic.Uint64 // failed work items (FailWork)
	workBase      atomic.Uint64 // workTotal at the last Progress
	workAt        atomic.Int64  // offset of the last FailWork, or never
	lastErr       atomic.Pointer[errBox]

	retrying atomic.Int64 // work items waiting for a retry, outside the backlog

	alertReason atomic.Pointer[string]
	alertUntil  atomic.Int64 // offset, or never

	noticeReason atomic.Pointer[string]
	noticeUntil  atomic.Int64 // offset, or never

	parked   atomic.Pointer[string] // the reason while parked, else nil
	liveFrom atomic.Int64           // offset of the last Unpark, or never
}

type errBox struct{ err error }

// NewWatermark returns a Watermark for the loop cfg.Name, starting now with
// no heartbeat, no progress, unknown backlog and no failures. Defaults for
// zero fields: StallWindow 30s, LivenessWindow 1m, FailureBound 5, Now
// time.Now. It returns an error wrapping [ErrInvalidConfig] when cfg is
// invalid.
func NewWatermark(cfg WatermarkConfig) (*Watermark, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	w := &Watermark{
		name:           cfg.Name,
		now:            cfg.Now,
		start:          cfg.Now(),
		stallWindow:    cfg.StallWindow,
		livenessWindow: cfg.LivenessWindow,
		failureBound:   int64(cfg.FailureBound),
	}
	w.heartbeat.Store(never)
	w.progress.Store(never)
	w.backlog.Store(backlogUnknown)
	w.lag.Store(lagUnknown)
	w.idleAt.Store(never)
	w.runSince.Store(never)
	w.alertUntil.Store(never)
	w.noticeUntil.Store(never)
	w.liveFrom.Store(never)
	w.workAt.Store(never)
	return w, nil
}

// Name returns the loop's name.
func (w *Watermark) Name() string { return w.name }

// String returns "loop/<name>", the name of its checks.
func (w *Watermark) String() string { return "loop/" + w.name }

func (w *Watermark) tick() int64 { return int64(w.now().Sub(w.start)) }

func (w *Watermark) offset(t time.Time) int64 { return int64(t.Sub(w.start)) }

func (w *Watermark) at(off int64) time.Time { return w.start.Add(time.Duration(off)) }

// Heartbeat records that the loop iterated. Call it on every iteration,
// including iterations that failed or found nothing to do: it is what
// liveness ([StateWedged]) watches, and liveness must never depend on Redis
// or PostgreSQL being reachable.
func (w *Watermark) Heartbeat() { w.heartbeat.Store(w.tick()) }

// Progress records forward progress: the position advanced to pos, or a
// unit of work finished. It also counts as a heartbeat and as a success:
// consecutive failures, of iterations ([Watermark.Fail]) and of work items
// ([Watermark.FailWork]), go back to zero — those recorded before it; one
// recorded at the same moment from another goroutine stays counted. pos is
// the position as text, such as the last stream ID acknowledged or the last
// outbox row id; "" keeps the previous text. Only the first
// [MaxPositionLen] bytes are kept. When two goroutines report progress at
// the same instant one text may be dropped; the time and the count always
// advance. It counts one unit of work done; [Watermark.ProgressBy] counts
// more.
func (w *Watermark) Progress(pos string) { w.ProgressBy(pos, 1) }

// ProgressBy is [Watermark.Progress] for n units of work done at once,
// such as the entries of a batch acknowledged or the outbox rows of a
// cycle published: WatermarkSnapshot.WorkDone grows by n (the status
// page's rate chart). n of 0 or less counts nothing but is still
// progress.
func (w *Watermark) ProgressBy(pos string, n int) {
	failed, workFailed := w.failuresTotal.Load(), w.workTotal.Load()
	t := w.tick()
	w.progress.Store(t) // also a heartbeat: readers take the later of the two
	w.progressTotal.Add(1)
	if n > 0 {
		w.workDone.Add(uint64(n))
	}
	raise(&w.failBase, failed)
	raise(&w.workBase, workFailed)
	if pos != "" {
		w.pos.store(pos)
	}
}

// raise sets base to n unless it is already at or past n. It stores only
// when base changes, so a loop that does not fail writes nothing.
func raise(base *atomic.Uint64, n uint64) {
	for {
		cur := base.Load()
		if n <= cur || base.CompareAndSwap(cur, n) {
			return
		}
	}
}

// consecutive returns the failures of total since base. base is read
// first: a reset between the two reads is then seen as not yet happened,
// never as a count below zero.
func consecutive(total, base *atomic.Uint64) int64 {
	b := base.Load()
	return int64(total.Load() - b)
}

// SetBacklog records the work known to be waiting: consumer-group lag plus
// pending entries, unpublished outbox rows, … A negative n means the
// backlog cannot be measured, like [Watermark.BacklogUnknown] (go-redis
// reports an unknown group lag as -1). A backlog of zero makes the loop
// idle, which is ready however old its last progress is.
func (w *Watermark) SetBacklog(n int64) {
	if n < 0 {
		w.BacklogUnknown()
		return
	}
	prev := w.backlog.Swap(n)
	if n == 0 || n < prev || prev == backlogUnknown {
		// The backlog fell, emptied or became known: a new growth run
		// starts here.
		t := w.tick()
		w.runStart.Store(n)
		w.runSince.Store(t)
		if n == 0 {
			w.idleAt.Store(t)
		}
	}
}

// BacklogUnknown records that the backlog cannot be measured now (the
// measurement failed, or the server cannot say). Unknown backlog counts as
// backlog: without progress the loop stalls. It is the state of a new
// Watermark.
func (w *Watermark) BacklogUnknown() { w.backlog.Store(backlogUnknown) }

// SetLag records how far behind the loop is in time: the age of the oldest
// entry not yet delivered to a consumer group, of the oldest unpublished
// outbox row, … A negative d means the lag cannot be measured; it is
// unknown until the first SetLag. The lag is shown to people (the status
// page) and does not enter the rules: it is no heartbeat and never changes
// the state. It takes no lock and does not allocate.
func (w *Watermark) SetLag(d time.Duration) {
	if d < 0 {
		d = lagUnknown
	}
	w.lag.Store(int64(d))
}

// Succeed records an iteration that worked without necessarily advancing
// (for example a read that returned nothing): consecutive failed
// iterations go back to zero (failed work items do not: see
// [Watermark.FailWork]). It counts as a heartbeat.
func (w *Watermark) Succeed() {
	failed := w.failuresTotal.Load()
	w.heartbeat.Store(w.tick())
	raise(&w.failBase, failed)
}

// Fail records a failed iteration with its error (nil is recorded as a
// failure without an error): the loop could not do its round, such as a
// read from a dependency that is down. It counts as a heartbeat: the loop
// is alive, only not succeeding. Consecutive failures reaching the failure
// bound make the loop failing (not ready) until the next
// [Watermark.Succeed] or [Watermark.Progress]. Fail allocates one small box
// for the error.
func (w *Watermark) Fail(err error) {
	w.heartbeat.Store(w.tick())
	w.failuresTotal.Add(1)
	if err != nil {
		w.lastErr.Store(&errBox{err})
	}
}

// FailWork records a unit of work that failed (nil is recorded without an
// error): the loop ran, but what it ran did not succeed — a consumer's
// handler failed on an entry, so the entry waits for a retry or was
// dead-lettered. It counts as a heartbeat. Unlike [Watermark.Fail], only
// [Watermark.Progress] ends a run of failed work items, not
// [Watermark.Succeed]: a loop whose reads work but whose every entry fails
// is not making progress. Failed work items reaching the failure bound with
// no progress since make the loop failing (not ready) while items still
// wait for a retry ([Watermark.SetRetrying]) or the last one failed within
// the stall window: once the failed items are gone (dead-lettered) and
// none has failed for a stall window, a loop with nothing left to do is
// judged by its other rules again, instead of staying failing until the
// next good item arrives. Report each item once, however often it is
// retried, so that one item retried many times does not count as many.
// FailWork allocates one small box for the error.
func (w *Watermark) FailWork(err error) {
	t := w.tick()
	w.heartbeat.Store(t)
	w.workAt.Store(t)
	w.workTotal.Add(1)
	if err != nil {
		w.lastErr.Store(&errBox{err})
	}
}

// SetRetrying records how many work items wait for a retry (a consumer's
// entries left pending after a handler failure, until they are delivered
// again). They are not backlog: the loop reports them with
// [Watermark.SetBacklog] left out, and its reason shows "retrying n". A
// wait for redelivery is not a stall; whether the retries fail is for
// [Watermark.FailWork] to say. Negative n counts as zero.
func (w *Watermark) SetRetrying(n int64) { w.retrying.Store(max(n, 0)) }

// Alert holds the loop not ready ([StateAlert]) until until, with reason,
// whatever its progress: another component uses it to surface a condition
// to supervision (brandguard's legacy schema_version 1 entries, for
// example). Alerts do not shorten each other: the loop stays held until the
// latest until given, and reports the latest reason. Alert copies reason
// only when it differs from the current one. [Watermark.ClearAlert] ends the
// hold early.
func (w *Watermark) Alert(reason string, until time.Time) {
	hold(&w.alertReason, &w.alertUntil, reason, w.offset(until))
}

// ClearAlert ends a hold set by [Watermark.Alert].
func (w *Watermark) ClearAlert() { w.alertUntil.Store(never) }

// Notice shows reason beside the loop's state until until without changing
// the state: a condition worth a person's look that does not make the loop
// unable to work (a consumer's legacy schema_version 1 entry under the
// notice policy, for example). The reason of the loop's status ends in
// "; notice: <reason> (for <d> more)", which the status page shows, and
// /ready?full=1 lists it under "notice/loop/<name>" while the loop's own
// check stays "OK". Like [Watermark.Alert], notices do not shorten each
// other, and the latest reason is shown. [Watermark.ClearNotice] ends it
// early.
func (w *Watermark) Notice(reason string, until time.Time) {
	hold(&w.noticeReason, &w.noticeUntil, reason, w.offset(until))
}

// ClearNotice ends a notice set by [Watermark.Notice].
func (w *Watermark) ClearNotice() { w.noticeUntil.Store(never) }

func (w *Watermark) activeNotice(now int64) (string, bool) {
	until := w.noticeUntil.Load()
	if until == never || now >= until {
		return "", false
	}
	if r := w.noticeReason.Load(); r != nil {
		return *r, true
	}
	return "(no reason)", true
}

// hold records reason and extends until to u, never shortening it: the
// shared part of Alert and Notice.
func hold(reason *atomic.Pointer[string], until *atomic.Int64, r string, u int64) {
	if cur := reason.Load(); cur == nil || *cur != r {
		reason.Store(&r)
	}
	for {
		old := until.Load()
		if u <= old || until.CompareAndSwap(old, u) {
			return
		}
	}
}

// LivenessWindow returns how long the loop may go without a heartbeat
// before it is judged wedged, so a loop can check that its longest wait
// fits in it.
func (w *Watermark) LivenessWindow() time.Duration { return w.livenessWindow }

// lastBeat is the offset of the last heartbeat: Progress does not store
// one separately (one store less on the hot path), so it is the later of
// the two.
func (w *Watermark) lastBeat() int64 { return max(w.heartbeat.Load(), w.progress.Load()) }

func (w *Watermark) timeOf(off int64) (time.Time, bool) {
	if off == never {
		return time.Time{}, false
	}
	return w.at(off), true
}

// Park marks the loop as held by its supervisor with reason (such as
// "service in backoff"): the loop is not running, so it cannot heartbeat.
// While parked the loop is [StateParked] — not ready, with reason
// "parked: <reason>", and left out of liveness — whatever its heartbeat,
// so a supervisor's restart backoff or a permanent stop never fails /live
// and never turns into a pod restart. Park replaces the reason of an
// earlier Park. It takes no lock and never blocks, so a supervisor's event
// hook may call it; it stores a new copy of reason each time, so an
// [Watermark.Unpark] running at the same moment never undoes it, even with
// the same reason.
func (w *Watermark) Park(reason string) {
	w.parked.Store(&reason)
}

// Unpark ends a [Watermark.Park]: the supervisor runs the loop again. The
// liveness window restarts at Unpark, so a loop parked for longer than the
// window has a whole window to heartbeat before it counts as wedged. It
// does nothing on a loop that is not parked, and a Park made while it runs
// wins (the loop stays parked with that reason). It takes no lock and
// never blocks.
func (w *Watermark) Unpark() {
	cur := w.parked.Load()
	if cur == nil {
		return
	}
	// Restart the liveness window before unparking, so no reader sees the
	// loop unparked and judged by its old heartbeat (readers load parked
	// first, then liveFrom). When a Park replaced cur meanwhile, the swap
	// fails and that later Park stands.
	w.liveFrom.Store(w.tick())
	w.parked.CompareAndSwap(cur, nil)
}

// WatermarkSnapshot is what a [Watermark] has recorded, as
// [Watermark.Snapshot] read it. Each field is read atomically, but not all
// of them at one instant: a loop updating meanwhile may show in some fields
// and not yet in others.
type WatermarkSnapshot struct {
	Name string
	// Position is the text of the last position given to
	// [Watermark.Progress], or "" if none.
	Position string
	// LastProgress is the time of the last progress; zero if none yet.
	LastProgress time.Time
	// LastHeartbeat is the time of the last heartbeat (any update but
	// SetBacklog, BacklogUnknown and Alert counts); zero if none yet.
	LastHeartbeat time.Time
	// ProgressTotal counts the calls of [Watermark.Progress] and
	// [Watermark.ProgressBy]; WorkDone the units of work they reported
	// (one per Progress, n per ProgressBy).
	ProgressTotal uint64
	WorkDone      uint64
	// Backlog is the last backlog reported; BacklogKnown is false when it
	// is unknown.
	Backlog      int64
	BacklogKnown bool
	// Lag is the last lag given to [Watermark.SetLag]; LagKnown is false
	// before the first, or after a negative one.
	Lag      time.Duration
	LagKnown bool
	// Retrying is the last count given to [Watermark.SetRetrying].
	Retrying int64
	// ConsecutiveFailures counts the failed iterations since the last
	// success or progress; ConsecutiveWorkFailures the failed work items
	// since the last progress ([Watermark.FailWork]).
	ConsecutiveFailures     int64
	ConsecutiveWorkFailures int64
	// FailuresTotal counts the calls of [Watermark.Fail] and
	// [Watermark.FailWork].
	FailuresTotal uint64
	// LastError is the error of the last Fail or FailWork that had one,
	// even if the loop has succeeded since; nil if none.
	LastError error
	// Parked is true while the loop is parked ([Watermark.Park]), with the
	// reason given.
	Parked       bool
	ParkedReason string
	// Notice is true while a notice ([Watermark.Notice]) is shown, with
	// its reason.
	Notice       bool
	NoticeReason string
}

// Snapshot reads everything the watermark has recorded, at its clock's
// now (which decides whether a notice is still shown). It allocates the
// position's text.
func (w *Watermark) Snapshot() WatermarkSnapshot {
	s := WatermarkSnapshot{
		Name:                    w.name,
		Position:                w.pos.load(),
		ProgressTotal:           w.progressTotal.Load(),
		WorkDone:                w.workDone.Load(),
		Retrying:                w.retrying.Load(),
		ConsecutiveFailures:     w.consecutiveFailures(),
		ConsecutiveWorkFailures: consecutive(&w.workTotal, &w.workBase),
		FailuresTotal:           w.failuresTotal.Load() + w.workTotal.Load(),
		LastError:               w.lastError(),
	}
	s.LastProgress, _ = w.timeOf(w.progress.Load())
	s.LastHeartbeat, _ = w.timeOf(w.lastBeat())
	if n := w.backlog.Load(); n != backlogUnknown {
		s.Backlog, s.BacklogKnown = n, true
	}
	if n := w.lag.Load(); n != lagUnknown {
		s.Lag, s.LagKnown = time.Duration(n), true
	}
	if r := w.parked.Load(); r != nil {
		s.Parked, s.ParkedReason = true, *r
	}
	s.NoticeReason, s.Notice = w.activeNotice(w.offset(w.now()))
	return s
}

func (w *Watermark) consecutiveFailures() int64 { return consecutive(&w.failuresTotal, &w.failBase) }

func (w *Watermark) lastError() error {
	if b := w.lastErr.Load(); b != nil {
		return b.err
	}
	return nil
}
