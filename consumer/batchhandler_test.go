package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// setInsert is a BatchHandler that writes one row per message with one
// statement, and names as failed the messages fail picks.
func setInsert(calls *atomic.Int32, fail func(m *consumer.Message) error) consumer.BatchHandler {
	return func(ctx context.Context, ms []*consumer.Message, errs []error) error {
		calls.Add(1)
		tx, ok := dedup.Tx(ctx)
		if !ok {
			return consumer.Permanent(errors.New("no inbox transaction"))
		}
		ids, aggs := make([]string, len(ms)), make([]string, len(ms))
		for i, m := range ms {
			ids[i], aggs[i] = m.Envelope.EventID, m.Envelope.AggregateID
		}
		if _, err := tx.Exec(ctx, "INSERT INTO effects (event_id, agg) SELECT * FROM unnest($1::text[], $2::text[])", ids, aggs); err != nil {
			return err
		}
		for i, m := range ms {
			if fail != nil {
				errs[i] = fail(m)
			}
		}
		return nil
	}
}

const effectsTable = "CREATE TABLE effects (seq bigserial PRIMARY KEY, event_id text NOT NULL, agg text NOT NULL)"

// TestBatchHandlerAppliesARunAtOnce: a BatchHandler gets a lane's run of
// entries in one call: 120 events are applied, once each, in a handful of
// calls rather than 120.
func TestBatchHandlerAppliesARunAtOnce(t *testing.T) {
	db, store := migratedInbox(t, dedup.PostgresConfig{}, effectsTable)
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	const n = 120
	var envs []event.Envelope
	for i := range n {
		envs = append(envs, envelope(fmt.Sprintf("e%03d", i), platform.BetSettledConfirmed, fmt.Sprintf("bet-%d", i%10), 3, nil))
	}
	publish(t, rdb, stream, envs...)
	var calls atomic.Int32
	cfg := fastConfig(rdb, stream, nil)
	cfg.Handlers = nil
	cfg.BatchHandlers = map[event.Type]consumer.BatchHandler{platform.BetSettledConfirmed: setInsert(&calls, nil)}
	cfg.Dedup, cfg.Concurrency = store, 2
	h := start(t, cfg)
	testkit.Eventually(t, 10*time.Second, "every event applied", func() bool {
		return h.pending() == 0 && h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == n
	})
	if got := queryInt(t, db, "SELECT count(DISTINCT event_id) FROM effects"); got != n || queryInt(t, db, "SELECT count(*) FROM effects") != n {
		t.Errorf("%d events have effects (%d rows), want %d, once each", got, queryInt(t, db, "SELECT count(*) FROM effects"), n)
	}
	if c := calls.Load(); c > 4 {
		t.Errorf("%d handler calls for %d events read in one batch on two lanes, want at most 4", c, n)
	}
}

// TestBatchHandlerFailuresStayAlone: in one call, a message the handler
// names failed has its row undone while its neighbours commit; a flaky
// one succeeds on its retry (alone); one that always fails is
// dead-lettered with its own error, and the later message of its
// aggregate is applied only after that, never before.
func TestBatchHandlerFailuresStayAlone(t *testing.T) {
	db, store := migratedInbox(t, dedup.PostgresConfig{}, effectsTable)
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var flakyRuns atomic.Int32
	var mu sync.Mutex
	var order []string
	fail := func(m *consumer.Message) error {
		mu.Lock()
		order = append(order, m.Envelope.EventID)
		mu.Unlock()
		switch m.Envelope.EventID {
		case "bad":
			return errors.New("bad cannot be applied")
		case "flaky":
			if flakyRuns.Add(1) == 1 {
				return errors.New("flaky, first time")
			}
		}
		return nil
	}
	publish(t, rdb, stream,
		envelope("a1", platform.BetSettledConfirmed, "A", 3, nil), envelope("bad", platform.BetSettledConfirmed, "B", 3, nil),
		envelope("flaky", platform.BetSettledConfirmed, "C", 3, nil), envelope("after-bad", platform.BetSettledConfirmed, "B", 3, nil),
		envelope("a2", platform.BetSettledConfirmed, "A", 3, nil))
	var calls atomic.Int32
	cfg := fastConfig(rdb, stream, nil)
	cfg.Handlers = nil
	cfg.BatchHandlers = map[event.Type]consumer.BatchHandler{platform.BetSettledConfirmed: setInsert(&calls, fail)}
	cfg.Dedup, cfg.Concurrency, cfg.MaxDeliveries = store, 1, 1
	h := start(t, cfg)
	testkit.Eventually(t, 10*time.Second, "every entry resolved", func() bool {
		return h.pending() == 0 && h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 4
	})
	dl := h.deadLetters()
	if len(dl) != 1 || dl[0].Values[consumer.DLQFieldReason] != consumer.ReasonMaxDeliveries ||
		dl[0].Values[consumer.DLQFieldError] != "bad cannot be applied" {
		t.Fatalf("dead letters %v, want one: bad, max_deliveries, with its own error", dl)
	}
	effects := texts(t, db, "SELECT event_id FROM effects ORDER BY seq")
	seen := map[string]int{}
	for _, id := range effects {
		seen[id]++
	}
	for _, id := range []string{"a1", "a2", "flaky", "after-bad"} {
		if seen[id] != 1 {
			t.Errorf("%s has %d effects, want 1 (effects %v)", id, seen[id], effects)
		}
	}
	if seen["bad"] != 0 {
		t.Errorf("the failed message's row committed: effects %v", effects)
	}
	mu.Lock()
	defer mu.Unlock()
	sawBad := false
	for _, id := range order {
		sawBad = sawBad || id == "bad"
		if id == "after-bad" && !sawBad {
			t.Errorf("after-bad reached the handler before bad did: calls saw %v", order)
		}
	}
}

// TestBatchHandlersNeedATransactionalInbox: BatchHandlers without a
// dedup.TxBatcher, with TxPerEvent, or for a type that also has a Handler
// are a configuration error.
func TestBatchHandlersNeedATransactionalInbox(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	_, store := migratedInbox(t, dedup.PostgresConfig{}, effectsTable)
	var calls atomic.Int32
	bh := map[event.Type]consumer.BatchHandler{platform.BetSettledConfirmed: setInsert(&calls, nil)}
	for name, tune := range map[string]func(*consumer.Config){
		"no dedup":   func(c *consumer.Config) { c.Handlers = nil },
		"TxPerEvent": func(c *consumer.Config) { c.Handlers, c.Dedup, c.TxPerEvent = nil, store, true },
		"both kinds": func(c *consumer.Config) { c.Dedup = store },
		"nil handler": func(c *consumer.Config) {
			c.Handlers, c.Dedup, c.BatchHandlers = nil, store, map[event.Type]consumer.BatchHandler{platform.BetSettledConfirmed: nil}
		},
	} {
		cfg := fastConfig(rdb, walletStream(prefix), handlersFor(func(context.Context, *consumer.Message) error { return nil }))
		cfg.BatchHandlers = bh
		tune(&cfg)
		if _, err := consumer.New(cfg); !errors.Is(err, consumer.ErrInvalidConfig) {
			t.Errorf("%s: New = %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestBatchHandlerBesideAHandlerKeepsOrder: one aggregate's events of a
// type with a BatchHandler and of a type with a Handler, interleaved, take
// effect in stream order; an aggregate with only the batch type is applied
// in a set call.
func TestBatchHandlerBesideAHandlerKeepsOrder(t *testing.T) {
	db, store := migratedInbox(t, dedup.PostgresConfig{}, effectsTable)
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var calls atomic.Int32
	single := func(ctx context.Context, m *consumer.Message) error {
		tx, _ := dedup.Tx(ctx)
		_, err := tx.Exec(ctx, "INSERT INTO effects (event_id, agg) VALUES ($1, $2)", m.Envelope.EventID, m.Envelope.AggregateID)
		return err
	}
	publish(t, rdb, stream,
		envelope("x1", platform.BetSettledConfirmed, "X", 3, nil), envelope("y1", platform.BetSettledConfirmed, "Y", 3, nil),
		envelope("x2", platform.BetRolledBackConfirmed, "X", 3, nil), envelope("y2", platform.BetSettledConfirmed, "Y", 3, nil),
		envelope("x3", platform.BetSettledConfirmed, "X", 3, nil))
	cfg := fastConfig(rdb, stream, map[event.Type]consumer.Handler{platform.BetRolledBackConfirmed: single})
	cfg.BatchHandlers = map[event.Type]consumer.BatchHandler{platform.BetSettledConfirmed: setInsert(&calls, nil)}
	cfg.Dedup = store
	h := start(t, cfg)
	testkit.Eventually(t, 10*time.Second, "every event applied", func() bool {
		return h.pending() == 0 && h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied)+
			h.outcome(platform.BetRolledBackConfirmed, consumer.OutcomeApplied) == 5
	})
	got := texts(t, db, "SELECT string_agg(event_id, ' ' ORDER BY seq) FROM effects GROUP BY agg ORDER BY agg")
	if fmt.Sprint(got) != "[x1 x2 x3 y1 y2]" {
		t.Errorf("effects by aggregate %q, want [x1 x2 x3 y1 y2]: each aggregate in stream order", got)
	}
}
