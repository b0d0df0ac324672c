package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

func malformedEntry(id string) map[string]any {
	return map[string]any{"event_id": id, "event_type": "BET_SETTLED_CONFIRMED", "schema_version": "2",
		"brand_id": "3", "occurred_at": "2026-05-15T10:20:30Z", "aggregate_id": "bet-1", "payload": "{not json"}
}

// TestDeadLetterFailureKeepsTheEntryPending: when the dead-letter append
// fails at run time (the key holds another type), the entry must not be
// acknowledged — MULTI/EXEC would still run the XACK after the failed XADD
// and lose it. It stays pending, the failure is counted and logged as what
// happened, and once the key is fixed the entry is dead-lettered.
func TestDeadLetterFailureKeepsTheEntryPending(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	ctx := context.Background()
	rec := newRecorder()
	cfg := fastConfig(rdb, stream, handlersFor(rec.handle))
	cfg.ReclaimIdle, cfg.ReclaimInterval = 300*time.Millisecond, 50*time.Millisecond
	cfg.HandlerTimeout = 100 * time.Millisecond
	h := start(t, cfg)
	publish(t, rdb, stream, envelope("warm", platform.BetSettledConfirmed, "bet-0", 3, nil))
	testkit.Eventually(t, 5*time.Second, "started", func() bool { return rec.times("warm") == 1 })
	// The key goes wrong after the start-up check.
	if err := rdb.Set(ctx, h.dlq, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	id := publishRaw(t, rdb, stream, malformedEntry("bad"))
	testkit.Eventually(t, 5*time.Second, "the dead-letter failure counted", func() bool {
		return h.counter("headway_consumer_dead_letter_failures_total", nil) >= 1
	})
	pend, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: "rolling_service", Start: id, End: id, Count: 1}).Result()
	if err != nil || len(pend) != 1 {
		t.Fatalf("the entry whose dead letter failed is not pending (%v, %v): it left the group without being in any dead-letter stream", pend, err)
	}
	if n := h.counter("headway_consumer_dead_lettered_total", nil); n != 0 {
		t.Fatalf("dead_lettered_total = %v while the dead-letter stream could not be written", n)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "not acknowledged and stays pending") {
		t.Fatalf("the log does not say the entry stays pending:\n%s", logs)
	}
	// Fixed: the entry comes back and is dead-lettered, exactly once.
	if err := rdb.Del(ctx, h.dlq).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "dead-lettered after the fix", func() bool { return len(h.deadLetters()) == 1 && h.pending() == 0 })
	if got := h.deadLetters()[0].Values[consumer.DLQFieldID]; got != id {
		t.Fatalf("dead letter of %v, want %s", got, id)
	}
}

// TestServeRefusesDeadLetterKeyOfWrongType: a dead-letter key that is not
// a stream would fail every dead letter; Serve refuses to start, says why,
// and starts once the key is fixed (a supervisor restarts it).
func TestServeRefusesDeadLetterKeyOfWrongType(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	ctx := context.Background()
	if err := rdb.HSet(ctx, stream+":dlq", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	c, err := consumer.New(fastConfig(rdb, stream, handlersFor(newRecorder().handle)))
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = c.Serve(sctx)
	if !errors.Is(err, consumer.ErrDeadLetterKey) || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("Serve = %v, want ErrDeadLetterKey naming the type", err)
	}
	if c.Watermark().Snapshot().LastError == nil {
		t.Fatal("the refusal is not on the watermark (readiness would not show it)")
	}
}

// TestOversizedEntryDeadLetteredBounded: an entry over the codec's size
// limit is dead-lettered without its oversized fields, with
// dlq_truncated saying what was left out; the dead letter stays small.
func TestOversizedEntryDeadLetteredBounded(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	h := start(t, fastConfig(rdb, stream, handlersFor(newRecorder().handle)))
	big := malformedEntry("big")
	big["payload"] = `"` + strings.Repeat("x", 2*event.DefaultMaxEntryBytes) + `"`
	publishRaw(t, rdb, stream, big)
	testkit.Eventually(t, 5*time.Second, "dead-lettered", func() bool { return len(h.deadLetters()) == 1 && h.pending() == 0 })
	dl := h.deadLetters()[0].Values
	if _, ok := dl["payload"]; ok {
		t.Fatal("the dead letter copies the oversized payload")
	}
	tr, _ := dl[consumer.DLQFieldTruncated].(string)
	if !strings.Contains(tr, "payload") || dl["event_id"] != "big" || dl[consumer.DLQFieldReason] != "entry_too_large" {
		t.Fatalf("dead letter %v: want event_id kept, reason entry_too_large, dlq_truncated naming payload", dl)
	}
	size := 0
	for k, v := range dl {
		size += len(k) + len(v.(string))
	}
	if size > 16<<10 {
		t.Fatalf("dead letter of %d bytes, want it bounded", size)
	}
}

// TestEntryWithManyFieldsDeadLettered: an entry with more fields than the
// dead-letter script can pass to XADD (Lua unpacks about 8,000 values) is
// still dead-lettered, with its envelope fields and a note, not left
// pending for ever.
func TestEntryWithManyFieldsDeadLettered(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	h := start(t, fastConfig(rdb, stream, handlersFor(newRecorder().handle)))
	wide := malformedEntry("wide")
	for i := range 9000 {
		wide[fmt.Sprintf("x%05d", i)] = "v"
	}
	publishRaw(t, rdb, stream, wide)
	testkit.Eventually(t, 5*time.Second, "dead-lettered", func() bool { return len(h.deadLetters()) == 1 && h.pending() == 0 })
	dl := h.deadLetters()[0].Values
	if dl["event_id"] != "wide" || dl["payload"] != "{not json" || dl[consumer.DLQFieldReason] != "malformed" {
		t.Fatalf("dead letter lost its envelope fields: event_id=%v payload=%v reason=%v", dl["event_id"], dl["payload"], dl[consumer.DLQFieldReason])
	}
	if tr, _ := dl[consumer.DLQFieldTruncated].(string); !strings.Contains(tr, "9007 fields") {
		t.Fatalf("dlq_truncated = %q, want the field count", tr)
	}
}

// TestDeadLetterSkipsAnEntryAnotherConsumerTook: pod-a runs an entry; a peer
// claims it meanwhile (as its reclaim would after pod-a paused); pod-a's
// handler then fails permanently. pod-a must not dead-letter it: the
// script's XACK would take it off the peer's pending list while the peer
// runs it, and a redrive would apply it a second time.
func TestDeadLetterSkipsAnEntryAnotherConsumerTook(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	ctx := context.Background()
	started, release := make(chan struct{}, 1), make(chan struct{})
	handler := func(_ context.Context, m *consumer.Message) error {
		started <- struct{}{}
		<-release
		return consumer.Permanent(errors.New("bad data"))
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Retry.Attempts = 1
	h := start(t, cfg)
	ids := publish(t, rdb, stream, envelope("e1", platform.BetSettledConfirmed, "bet-A", 3, nil))
	<-started
	if err := rdb.XClaim(ctx, &redis.XClaimArgs{Stream: stream, Group: "rolling_service", Consumer: "pod-b",
		MinIdle: 0, Messages: ids}).Err(); err != nil {
		t.Fatal(err)
	}
	close(release)
	testkit.Eventually(t, 5*time.Second, "pod-a's outcome counted", func() bool {
		return h.outcome(platform.BetSettledConfirmed, consumer.OutcomeDeferred) == 1
	})
	if n := len(h.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters of an entry pod-b holds", n)
	}
	if o := owner(t, rdb, stream, ids[0]); o != "pod-b" {
		t.Fatalf("entry owned by %q after pod-a gave up, want still pending for pod-b", o)
	}
	if !strings.Contains(h.logs.String(), "no longer pending for this consumer") {
		t.Error("the skip was not logged")
	}
}

// TestNewWarnsOfALivenessWindowBelowItsLongestCall: the loop's longest
// call, a blocking read, is bounded by Block + 5 s; with a shorter liveness
// window a hung Redis would make the consumer not live, and New says so.
func TestNewWarnsOfALivenessWindowBelowItsLongestCall(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "short", LivenessWindow: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var logs testkit.SyncBuffer
	cfg := fastConfig(rdb, walletStream(prefix), handlersFor(newRecorder().handle))
	cfg.Watermark = wm
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := consumer.New(cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "LivenessWindow is shorter than the loop's longest call") {
		t.Fatalf("New did not warn of a 3s liveness window:\n%s", logs.String())
	}
}

// TestRejectedEntryKeepsItsIdentity: an entry rejected for a missing brand
// is logged with its event_id and event_type and counted under its type,
// not as "other" with empty fields.
func TestRejectedEntryKeepsItsIdentity(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	h := start(t, fastConfig(rdb, stream, handlersFor(newRecorder().handle)))
	entry := malformedEntry("nobrand-1")
	entry["payload"] = "{}"
	delete(entry, "brand_id")
	publishRaw(t, rdb, stream, entry)
	testkit.Eventually(t, 5*time.Second, "dead-lettered", func() bool { return len(h.deadLetters()) == 1 && h.pending() == 0 })
	if n := h.outcome(platform.BetSettledConfirmed, consumer.OutcomeDeadLettered); n != 1 {
		t.Fatalf("entries_total{event_type=BET_SETTLED_CONFIRMED,outcome=dead_lettered} = %v, want 1", n)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "event_id=nobrand-1") || !strings.Contains(logs, "event_type=BET_SETTLED_CONFIRMED") {
		t.Fatalf("the dead letter's log line lost the entry's identity:\n%s", logs)
	}
}
