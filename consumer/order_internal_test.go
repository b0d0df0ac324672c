package consumer

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/event"
)

// orderBatch builds a batch of jobs of aggregate agg with the given IDs.
func orderBatch(reclaimed bool, ids ...string) *batch {
	b := &batch{reclaimed: reclaimed, items: make([]item, len(ids))}
	for i, id := range ids {
		it := &b.items[i]
		it.msg = redis.XMessage{ID: id}
		it.m.Envelope = event.Envelope{EventID: "e" + id, AggregateID: "A"}
		b.jobs = append(b.jobs, it)
	}
	return b
}

// settleOrder gives the runnable jobs their outcomes (applied unless listed
// in failed; after a failure the lane defers the rest of the aggregate, as
// runLane does) and updates the holds, as run does. It returns the IDs
// whose handler ran.
func settleOrder(c *Consumer, b *batch, failed ...string) []string {
	runnable, _ := c.admit(b, nil)
	var ran []string
	stuck := false
	for _, it := range runnable {
		if stuck {
			it.outcome = OutcomeDeferred
			continue
		}
		ran = append(ran, it.msg.ID)
		it.outcome = OutcomeApplied
		for _, f := range failed {
			if f == it.msg.ID {
				it.outcome, stuck = OutcomeRetryLater, true
			}
		}
	}
	c.updateHolds(b.items)
	return ran
}

// TestOrderHoldsEveryPendingEntry: XAUTOCLAIM brings an aggregate's pending
// entries back by idle time, so they come back on different passes. An
// entry runs only after every older entry its aggregate left pending here:
// a hold is not released when its oldest entry leaves while a newer one is
// still pending and out of the batch.
func TestOrderHoldsEveryPendingEntry(t *testing.T) {
	c := &Consumer{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	steps := []struct {
		name      string
		reclaimed bool
		ids       []string
		failed    []string
		want      string // the IDs that run
	}{
		{"a1 fails", false, []string{"1-0"}, []string{"1-0"}, "1-0"},
		{"a2 arrives: held", false, []string{"2-0"}, nil, ""},
		{"a3 arrives: held", false, []string{"3-0"}, nil, ""},
		{"reclaim takes a1 and a2 (a3 not idle yet)", true, []string{"1-0", "2-0"}, nil, "1-0,2-0"},
		{"a4 arrives: still held by a3", false, []string{"4-0"}, nil, ""},
		{"reclaim takes a4 alone: it waits for a3", true, []string{"4-0"}, nil, ""},
		{"reclaim takes a3 and a4", true, []string{"3-0", "4-0"}, nil, "3-0,4-0"},
		{"a5 arrives: nothing held", false, []string{"5-0"}, nil, "5-0"},
	}
	for _, s := range steps {
		got := strings.Join(settleOrder(c, orderBatch(s.reclaimed, s.ids...), s.failed...), ",")
		if got != s.want {
			t.Fatalf("%s: ran %q, want %q (holds %v)", s.name, got, s.want, c.holds.byAgg)
		}
	}
	if c.holds.size() != 0 {
		t.Fatalf("holds left: %v", c.holds.byAgg)
	}
}

// TestOrderHoldOnAFailureInTheMiddle: a reclaimed batch [a1, a3] with a2
// still pending out of it runs a1 and defers a3; when a1 succeeds and a2
// later fails, a3 still waits for a2.
func TestOrderHoldOnAFailureInTheMiddle(t *testing.T) {
	c := &Consumer{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if got := strings.Join(settleOrder(c, orderBatch(false, "1-0", "2-0", "3-0"), "1-0"), ","); got != "1-0" {
		t.Fatalf("[a1, a2, a3] with a1 failing ran %q", got) // a2, a3 deferred on a1's lane
	}
	if got := strings.Join(settleOrder(c, orderBatch(true, "1-0", "3-0")), ","); got != "1-0" {
		t.Fatalf("reclaimed [a1, a3] ran %q, want only a1 (a2 is pending and older than a3)", got)
	}
	if got := strings.Join(settleOrder(c, orderBatch(true, "2-0"), "2-0"), ","); got != "2-0" {
		t.Fatalf("reclaimed [a2] ran %q", got)
	}
	if got := strings.Join(settleOrder(c, orderBatch(true, "3-0")), ","); got != "" {
		t.Fatalf("reclaimed [a3] ran %q while a2 is pending after its failure", got)
	}
	if got := strings.Join(settleOrder(c, orderBatch(true, "2-0", "3-0")), ","); got != "2-0,3-0" {
		t.Fatalf("reclaimed [a2, a3] ran %q", got)
	}
}
