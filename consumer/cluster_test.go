package consumer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// TestClusterCoreCases runs the consumer's core cases on a three-node Redis
// Cluster: the dead letter and its acknowledgement in one script (the
// stream and dead-letter keys share a hash tag), batch dedup by script (the
// dedup keys of a group share one), reclaim, the group info poll, the
// refresh of entries in flight and the removal of an idle consumer (both
// scripts on the stream's key).
func TestClusterCoreCases(t *testing.T) {
	cl := redistest.StartCluster(t)
	rdb := cl.Client()
	ctx := context.Background()
	stream := event.StreamKey(platform.StreamWallet)
	if err := rdb.XGroupCreateMkStream(ctx, stream, "rolling_service", "0").Err(); err != nil {
		t.Fatal(err)
	}
	// A consumer that dies holding two entries.
	publish(t, rdb, stream, envelope("orphan-1", platform.BetSettledConfirmed, "bet-o1", 3, nil),
		envelope("orphan-2", platform.BetSettledConfirmed, "bet-o2", 3, nil))
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "rolling_service", Consumer: "pod-dead",
		Streams: []string{stream, ">"}, Count: 10}).Err(); err != nil {
		t.Fatal(err)
	}

	store, err := dedup.NewRedis(dedup.RedisConfig{Client: rdb})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	handler := func(ctx context.Context, m *consumer.Message) error {
		switch m.Envelope.AggregateID {
		case "bet-poison":
			return errors.New("always fails")
		case "bet-slow":
			time.Sleep(400 * time.Millisecond) // past ReclaimIdle: the refresh runs while it is held
		}
		return rec.handle(ctx, m)
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.Dedup = store
	cfg.MaxDeliveries = 2
	cfg.Retry.Attempts = 1
	cfg.HandlerTimeout = 100 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = 300*time.Millisecond, 50*time.Millisecond
	cfg.ConsumerIdleTimeout = 200 * time.Millisecond
	h := start(t, cfg)

	dup := envelope("dup", platform.BetSettledConfirmed, "bet-d", 3, nil)
	publish(t, rdb, stream, envelope("ok-1", platform.BetSettledConfirmed, "bet-1", 3, nil), dup, dup,
		envelope("poison", platform.BetSettledConfirmed, "bet-poison", 3, nil),
		envelope("slow", platform.BetSettledConfirmed, "bet-slow", 3, nil))
	publishRaw(t, rdb, stream, map[string]any{"event_id": "legacy", "event_type": "BET_SETTLED_CONFIRMED",
		"schema_version": "1", "occurred_at": "2026-05-15T10:20:30Z", "aggregate_id": "bet-l", "payload": "{}"})

	testkit.Eventually(t, 15*time.Second, "everything resolved", func() bool {
		return h.pending() == 0 && len(h.deadLetters()) == 2 && rec.n() == 5
	})
	for _, id := range []string{"orphan-1", "orphan-2", "ok-1", "dup", "slow"} {
		if rec.times(id) != 1 {
			t.Errorf("%s applied %d times", id, rec.times(id))
		}
	}
	reasons := map[string]bool{}
	for _, m := range h.deadLetters() {
		reasons[m.Values["dlq_reason"].(string)] = true
	}
	if !reasons[consumer.ReasonMaxDeliveries] || !reasons[string(brandguard.ReasonLegacySchema)] {
		t.Errorf("dead-letter reasons %v", reasons)
	}
	if h.outcome(platform.BetSettledConfirmed, consumer.OutcomeDuplicate) != 1 {
		t.Error("the duplicate was not recognised")
	}
	testkit.Eventually(t, 5*time.Second, "group info read on the cluster", func() bool {
		snap := h.wm.Snapshot()
		n, known := snap.Backlog, snap.BacklogKnown
		return known && n == 0
	})
	testkit.Eventually(t, 5*time.Second, "pod-dead, idle with nothing pending, removed", func() bool {
		cs, err := rdb.XInfoConsumers(ctx, stream, "rolling_service").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c.Name == "pod-dead" {
				return false
			}
		}
		return true
	})
	if strings.Contains(h.logs.String(), "refreshing entries in flight failed") {
		t.Error("the refresh failed on the cluster")
	}
}
