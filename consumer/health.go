package consumer

import (
	"sync"
	"time"

	"github.com/headwaylabs/headway/internal/streamid"
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

// maxWaiting bounds the entries remembered as failed here; past it, new
// ones are counted again if they fail again, and count as backlog.
const maxWaiting = 100_000

// waiting remembers the entries whose handler (or dedup store) failed on
// them here and that are still pending, with when they were last left
// pending and whether they now wait for their redelivery:
//
//   - each is counted once as a failed work item (FailWork), however
//     often it fails again on redelivery;
//   - while it waits for its redelivery it is retrying, not backlog
//     (readiness.Watermark.SetRetrying): waiting ReclaimIdle to retry is
//     no stall. Entries held back behind it (deferred: an earlier entry of
//     their aggregate failed) are not retrying — they have not failed and
//     cannot run — so they stay backlog, and a consumer whose every
//     aggregate is stuck behind a failing entry stalls;
//   - an entry that has waited longer than its redelivery should take
//     counts as backlog again, so a redelivery that never comes (or one
//     that another consumer took) still shows as a stall.
//
// The batch goroutines write it, the info poll reads it.
type waiting struct {
	mu     sync.Mutex
	failed map[string]failedEntry
}

type failedEntry struct {
	at       time.Time // when it was last left pending
	retrying bool      // left pending after its own failure, waiting for redelivery
}

func (w *waiting) clear() {
	w.mu.Lock()
	clear(w.failed)
	w.mu.Unlock()
}

// counted reports whether id has already been counted as a failed work
// item.
func (w *waiting) counted(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.failed[id]
	return ok
}

// update records the batch's outcomes: entries that left the pending list
// (or are another consumer's now) are forgotten; an entry left pending
// after its own failure waits from now for its redelivery; one that failed
// before and is now held back behind another is no longer retrying. While
// nothing has failed, a batch costs one lock and no lookup.
func (w *waiting) update(items []item, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range items {
		it := &items[i]
		switch {
		case it.resolved || it.notOurs:
			if len(w.failed) > 0 {
				delete(w.failed, it.msg.ID)
			}
		case it.failed && it.outcome == OutcomeRetryLater:
			if w.failed == nil {
				w.failed = map[string]failedEntry{}
			}
			if _, ok := w.failed[it.msg.ID]; ok || len(w.failed) < maxWaiting {
				w.failed[it.msg.ID] = failedEntry{at: now, retrying: true}
			}
		case len(w.failed) > 0:
			if _, ok := w.failed[it.msg.ID]; ok {
				w.failed[it.msg.ID] = failedEntry{at: now}
			}
		}
	}
}

// forget drops ids (gone from the pending list).
func (w *waiting) forget(ids []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		delete(w.failed, id)
	}
}

// retrying returns how many entries wait for their redelivery, counting
// those left pending before due as backlog again (their redelivery is
// overdue), and forgets entries not seen for long.
func (w *waiting) retrying(due, forgetBefore time.Time) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := int64(0)
	for id, e := range w.failed {
		switch {
		case e.at.Before(forgetBefore):
			delete(w.failed, id)
		case e.retrying && !e.at.Before(due):
			n++
		}
	}
	return n
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
// work item (FailWork: a retry of an entry already counted adds nothing),
// then any entry resolved otherwise — applied, a duplicate, ignored,
// unhandled, rejected as bad input (the consumer doing its job), or found
// trimmed (lost to retention, which has its own counter and alert) — is
// progress, which ends the run of failures. A batch that applied one entry
// and failed on others ends the run too: the failure rule sees a consumer
// whose every entry fails, not a failure rate (the dead-letter alerts do). Entries dead-lettered because
// their handler failed are not progress (ADR-003): a consumer whose every
// entry ends in the dead-letter stream is failing, not progressing.
func (c *Consumer) report(items []item) {
	last, done := "", 0
	for i := range items {
		it := &items[i]
		if it.failed && !c.waiting.counted(it.msg.ID) {
			c.wm.FailWork(it.err)
		}
		if it.resolved && !it.failed {
			done++
			if streamid.Less(last, it.msg.ID) {
				last = it.msg.ID
			}
		}
	}
	c.waiting.update(items, time.Now())
	if last != "" {
		c.wm.ProgressBy(last, done)
	}
}
