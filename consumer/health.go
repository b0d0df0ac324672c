package consumer

import (
	"sync"
	"time"
)

// AlertPolicy is how a consumer surfaces a condition of the data on its
// watermark: a legacy schema_version 1 event, or a group recreated after
// NOGROUP. Under every policy the condition is logged, counted
// (event_legacy_schema_total, headway_consumer_group_recreated_total) and
// alerted on by the shipped rules; the policy decides only whether it also
// makes the consumer not ready.
type AlertPolicy string

const (
	// AlertNotice shows the condition for AlertWindow beside the loop's
	// state ([readiness.Watermark.Notice]): on /status, in the loop's
	// reason and under "notice/loop/<name>" in /ready?full=1, while the
	// consumer stays ready. The default.
	AlertNotice AlertPolicy = "notice"
	// AlertHold makes the consumer not ready for AlertWindow
	// ([readiness.Watermark.Alert], [readiness.StateAlert]), unless a
	// worse state shows instead.
	AlertHold AlertPolicy = "hold"
)

// surface shows reason on the watermark for AlertWindow, as the policy
// says.
func (c *Consumer) surface(reason string) {
	until := time.Now().Add(c.cfg.AlertWindow)
	if c.cfg.AlertPolicy == AlertHold {
		c.wm.Alert(reason, until)
		return
	}
	c.wm.Notice(reason, until)
}

// maxWaiting bounds the entries remembered as waiting for a retry; past it,
// new ones count as backlog.
const maxWaiting = 100_000

// waiting remembers the entries this consumer left pending to be
// delivered again (a handler failed, or an earlier entry of their
// aggregate did, or their dedup lease was busy), with when it left them.
// They are not backlog while they wait for their redelivery: the loop
// reports them as "retrying" instead (readiness.Watermark.SetRetrying).
// An entry that has waited longer than its redelivery should take counts
// as backlog again, so a redelivery that never comes still shows as a
// stall; one that another consumer took meanwhile ages out the same way.
// The batch goroutines write it, the info poll reads it.
type waiting struct {
	mu   sync.Mutex
	left map[string]time.Time // entry ID → when it was left pending
}

func (w *waiting) clear() {
	w.mu.Lock()
	clear(w.left)
	w.mu.Unlock()
}

// has reports whether id is remembered as waiting.
func (w *waiting) has(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.left[id]
	return ok
}

// update records the batch's outcomes: entries that left the pending list
// are forgotten, entries left pending here wait from now. While nothing
// waits, a batch that resolved every entry costs one lock and no lookup.
func (w *waiting) update(items []item, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range items {
		it := &items[i]
		switch {
		case it.resolved || it.notOurs:
			if len(w.left) > 0 {
				delete(w.left, it.msg.ID)
			}
		case it.outcome == OutcomeRetryLater || it.outcome == OutcomeDeferred:
			if w.left == nil {
				w.left = map[string]time.Time{}
			}
			if _, ok := w.left[it.msg.ID]; ok || len(w.left) < maxWaiting {
				w.left[it.msg.ID] = now
			}
		}
	}
}

// forget drops ids (gone from the pending list).
func (w *waiting) forget(ids []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		delete(w.left, id)
	}
}

// count returns how many entries wait, after dropping those left pending
// before since: their redelivery is overdue.
func (w *waiting) count(since time.Time) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, t := range w.left {
		if t.Before(since) {
			delete(w.left, id)
		}
	}
	return int64(len(w.left))
}

// redeliveryDue is how long an entry left pending may wait for its
// redelivery before it counts as backlog again: it is reclaimed once idle
// for ReclaimIdle, by a pass every ReclaimInterval (a pass may wait for
// the batches in flight, hence two intervals).
func (c *Consumer) redeliveryDue() time.Duration {
	return c.cfg.ReclaimIdle + 2*c.cfg.ReclaimInterval
}

// report tells the watermark what the batch did, after its
// acknowledgement: each entry whose handler failed counts once as a failed
// work item (FailWork: a retry of an entry already waiting adds nothing),
// then any entry resolved otherwise — applied, a duplicate, ignored,
// unhandled, or rejected as bad input (the consumer doing its job) — is
// progress, which ends the run of failures. Entries dead-lettered because
// their handler failed are not progress (ADR-003): a consumer whose every
// entry ends in the dead-letter stream is failing, not progressing.
func (c *Consumer) report(items []item) {
	last := ""
	for i := range items {
		it := &items[i]
		if it.failed && !c.waiting.has(it.msg.ID) {
			c.wm.FailWork(it.err)
		}
		if it.resolved && !it.failed && streamIDLess(last, it.msg.ID) {
			last = it.msg.ID
		}
	}
	c.waiting.update(items, time.Now())
	if last != "" {
		c.wm.Progress(last)
	}
}
