package retention_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/deadletter"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/retention"
)

// TestTrimBesideSlowConsumers: retention trims every 20ms while two
// consumer groups apply the stream — one fast, one slow whose handler
// fails the first attempt of every seventh event, so entries stay pending
// and come back through reclaims. No entry is ever trimmed before its
// group has acknowledged it: every event is applied by both groups,
// lost_to_trim stays 0, and once everything is acknowledged the stream is
// trimmed to nothing.
func TestTrimBesideSlowConsumers(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := prefix + event.StreamKey(platform.StreamWallet)
	const n = 300

	type group struct {
		name    string
		reg     *prometheus.Registry
		mu      sync.Mutex
		applied map[string]bool
		done    chan error
	}
	var failedOnce sync.Map
	groups := []*group{{name: "fast"}, {name: "slow"}}
	for _, g := range groups {
		// Both groups exist before the first entry: a group created later
		// at "0" finds what retention has left (ADR-020).
		if err := rdb.XGroupCreateMkStream(ctx, stream, g.name, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range groups {
		g.reg, g.applied, g.done = prometheus.NewPedanticRegistry(), map[string]bool{}, make(chan error, 1)
		handler := func(ctx context.Context, m *consumer.Message) error {
			if g.name == "slow" {
				time.Sleep(time.Millisecond) // the slow group's work
				var i int
				_, _ = fmt.Sscanf(m.Envelope.EventID, "e%d", &i)
				if _, again := failedOnce.LoadOrStore(m.Envelope.EventID, true); i%7 == 0 && !again {
					return errors.New("first attempt fails")
				}
			}
			g.mu.Lock()
			g.applied[m.Envelope.EventID] = true
			g.mu.Unlock()
			return nil
		}
		c, err := consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: stream,
			CatalogStream: platform.StreamWallet, Group: g.name, Consumer: "pod-" + g.name,
			Handlers: map[event.Type]consumer.Handler{platform.BetSettledConfirmed: handler},
			Block:    50 * time.Millisecond, BatchSize: 20, ReclaimIdle: 500 * time.Millisecond, ReclaimInterval: 100 * time.Millisecond,
			HandlerTimeout: 400 * time.Millisecond,
			Retry:          consumer.RetryPolicy{Attempts: 1, Backoff: backoff.Exponential{Initial: time.Millisecond}},
			Registerer:     g.reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		go func() { g.done <- c.Serve(ctx) }()
	}
	var trimmed atomic.Int64
	trimDone := make(chan struct{})
	go func() {
		defer close(trimDone)
		for ctx.Err() == nil {
			r, err := retention.Trim(ctx, rdb, stream, retention.Policy{})
			if err == nil {
				trimmed.Add(r.Trimmed)
			}
			time.Sleep(20 * time.Millisecond) // the trim schedule
		}
	}()
	for i := range n {
		fields, err := event.Encode(event.Envelope{EventID: fmt.Sprintf("e%d", i), EventType: platform.BetSettledConfirmed,
			SchemaVersion: 2, BrandID: 3, OccurredAt: time.Now(), AggregateID: fmt.Sprintf("bet-%d", i%17), Payload: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: fields}).Err(); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(10 * time.Millisecond) // publish in bursts
		}
	}
	all := func() bool {
		for _, g := range groups {
			g.mu.Lock()
			k := len(g.applied)
			g.mu.Unlock()
			if k != n {
				return false
			}
		}
		return true
	}
	testkit.Eventually(t, 30*time.Second, "both groups applied every event", all)
	testkit.Eventually(t, 10*time.Second, "the stream trimmed to nothing", func() bool {
		l, err := rdb.XLen(ctx, stream).Result()
		return err == nil && l == 0
	})
	cancel()
	<-trimDone
	for _, g := range groups {
		<-g.done
		if lost := counter(t, g.reg, "headway_consumer_lost_to_trim_total"); lost != 0 {
			t.Errorf("group %s: lost_to_trim_total = %v, want 0", g.name, lost)
		}
	}
	if trimmed.Load() < n {
		t.Errorf("%d entries trimmed in all, want the %d the groups acknowledged", trimmed.Load(), n)
	}
}

// counter sums the samples of the counter name in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestTrimThenRedrive: an event whose handler fails for good is
// dead-lettered (acknowledged in its group), so retention trims it from
// the stream while the dead-letter stream, trimmed by age, keeps it; once
// the handler is fixed, the redrive appends it back and the group applies
// it: a trimmed stream loses nothing the dead letters hold, and
// lost_to_trim stays 0.
func TestTrimThenRedrive(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := prefix + event.StreamKey(platform.StreamWallet)
	dlq := prefix + event.DeadLetterKey(platform.StreamWallet)
	if err := rdb.XGroupCreateMkStream(ctx, stream, "g", "$").Err(); err != nil {
		t.Fatal(err)
	}
	var fixed atomic.Bool
	var mu sync.Mutex
	applied := map[string]int{}
	reg := prometheus.NewPedanticRegistry()
	done := serveWallet(t, ctx, rdb, stream, "pod", func(_ context.Context, m *consumer.Message) error {
		if m.Envelope.EventID == "e3" && !fixed.Load() {
			return consumer.Permanent(errors.New("a bug in the handler"))
		}
		mu.Lock()
		applied[m.Envelope.EventID]++
		mu.Unlock()
		return nil
	}, reg, func(c *consumer.Config) { c.DeadLetterStream = dlq })
	for i := range 6 {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: encoded(t, fmt.Sprintf("e%d", i), "bet-1")}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(applied) }
	testkit.Eventually(t, 10*time.Second, "5 applied, e3 dead-lettered", func() bool {
		n, err := rdb.XLen(ctx, dlq).Result()
		return err == nil && n == 1 && count() == 5
	})
	k := newKeeper(t, rdb, nil, nil, retention.Stream{Key: stream},
		retention.Stream{Key: dlq, Policy: retention.Policy{DeadLetter: true, MinAge: time.Hour}})
	if r := keeperTrim(t, k, stream); r.Length != 0 || r.Trimmed != 6 {
		t.Fatalf("stream: %+v, want all 6 trimmed (5 applied, e3 acknowledged as dead-lettered)", r)
	}
	if r := keeperTrim(t, k, dlq); r.Length != 1 || r.Trimmed != 0 {
		t.Fatalf("dead letters: %+v, want e3 kept (younger than MinAge)", r)
	}
	letters, err := rdb.XRange(ctx, dlq, "-", "+").Result()
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters %v %v", letters, err)
	}
	fixed.Store(true)
	if _, err := deadletter.Redrive(ctx, rdb, dlq, stream, letters[0].ID, nil); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "e3 applied after the redrive", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return applied["e3"] == 1
	})
	cancel()
	<-done
	if lost := counter(t, reg, "headway_consumer_lost_to_trim_total"); lost != 0 {
		t.Errorf("lost_to_trim_total = %v, want 0", lost)
	}
	for i := range 6 {
		if n := applied[fmt.Sprintf("e%d", i)]; n != 1 {
			t.Errorf("e%d applied %d times, want once", i, n)
		}
	}
}
