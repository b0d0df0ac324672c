package healthtable

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/supervisor"
)

func init() {
	scenarios["idle-hour"] = idleHour
	scenarios["steady-flow"] = steadyFlow
	scenarios["behind"] = behind
	scenarios["handler-hung"] = handlerHung
	scenarios["redis-frozen"] = redisFrozen
	scenarios["redis-down"] = redisDown
	scenarios["outage-through-restarts"] = outageThroughRestarts
	scenarios["legacy-notice"] = legacyPolicy(consumer.AlertNotice)
	scenarios["legacy-hold"] = legacyPolicy(consumer.AlertHold)
	scenarios["legacy-trickle-hung"] = legacyTrickleHung
	scenarios["one-retrying"] = oneRetrying
	scenarios["all-failing"] = allFailing(errors.New("wallet service: 503"))
	scenarios["all-dead-lettered"] = allFailing(consumer.Permanent(errors.New("bet not found")))
	scenarios["bad-input-only"] = badInputOnly
	scenarios["nogroup-recreate"] = nogroupRecreate
	scenarios["schema-v3"] = schemaV3
	scenarios["sentinel-bare"] = sentinelBare
}

func stream(prefix string) string { return prefix + event.StreamKey(platform.StreamWallet) }

func apply(context.Context, *consumer.Message) error { return nil }

// counting returns a handler that applies and counts.
func counting(n *atomic.Int64) consumer.Handler {
	return func(context.Context, *consumer.Message) error { n.Add(1); return nil }
}

func bets(prefix string, n int) []event.Envelope {
	out := make([]event.Envelope, n)
	for i := range out {
		out[i] = envelope(prefix+strconv.Itoa(i), platform.BetSettledConfirmed, "bet-"+prefix+strconv.Itoa(i))
	}
	return out
}

// hung returns a handler that hangs, ignoring its context, until release
// is called; it counts the entries it started. A scenario defers release,
// so the hung batch is let go before the tree stops (else the drain waits
// out its timeout).
func hung(started *atomic.Int64) (h consumer.Handler, release func()) {
	ch := make(chan struct{})
	var once sync.Once
	return func(context.Context, *consumer.Message) error {
		started.Add(1)
		<-ch
		return nil
	}, func() { once.Do(func() { close(ch) }) }
}

func idleHour(t *testing.T) observation {
	rdb, prefix := redistest.Client(t)
	s := newStack(t, supervisor.Config{})
	clk := testkit.NewClock()
	var applied atomic.Int64
	cfg := s.consumerConfig(rdb, stream(prefix), counting(&applied),
		func(c *readiness.WatermarkConfig) { c.Now = clk.Now })
	wm := cfg.Watermark
	s.consumer(cfg)
	s.serve()
	publish(t, rdb, cfg.Stream, bets("e", 1)...)
	testkit.Eventually(t, 5*time.Second, "applied, no backlog", func() bool {
		snap := wm.Snapshot()
		n, known := snap.Backlog, snap.BacklogKnown
		return applied.Load() == 1 && known && n == 0 && wm.Snapshot().ProgressTotal == 1
	})
	clk.Advance(time.Hour)
	snap := wm.Snapshot()
	beat := snap.LastHeartbeat
	testkit.Eventually(t, 5*time.Second, "a heartbeat after the hour", func() bool {
		snap := wm.Snapshot()
		b := snap.LastHeartbeat
		return b.After(beat)
	})
	return s.observe(subject{loop: wm})
}

func steadyFlow(t *testing.T) observation {
	var applied atomic.Int64
	rdb, s, cfg := running(t, counting(&applied), nil)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			publish(t, rdb, cfg.Stream, envelope("e"+strconv.Itoa(i), platform.BetSettledConfirmed, "bet-"+strconv.Itoa(i)))
			time.Sleep(10 * time.Millisecond) // the flow's pace, not a synchronisation
		}
	})
	defer func() { stop(); wg.Wait() }()
	testkit.Eventually(t, 5*time.Second, "progressing", func() bool {
		return applied.Load() > 20 && cfg.Watermark.Status().State == readiness.StateProgressing
	})
	return s.observe(subject{loop: cfg.Watermark})
}

func behind(t *testing.T) observation {
	slow := func(context.Context, *consumer.Message) error {
		time.Sleep(20 * time.Millisecond) // a handler slower than the producer
		return nil
	}
	rdb, s, cfg := running(t, slow, func(c *consumer.Config) {
		c.BatchSize, c.Concurrency = 1, 1
	})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			publish(t, rdb, cfg.Stream, bets("e"+strconv.Itoa(i)+"-", 3)...)
			time.Sleep(20 * time.Millisecond) // three entries per handler run
		}
	})
	defer func() { stop(); wg.Wait() }()
	testkit.Eventually(t, 10*time.Second, "behind", func() bool { return cfg.Watermark.Status().State == readiness.StateBehind })
	return s.observe(subject{loop: cfg.Watermark})
}

func handlerHung(t *testing.T) observation {
	var started atomic.Int64
	h, release := hung(&started)
	defer release()
	rdb, s, cfg := running(t, h, func(c *consumer.Config) {
		c.HandlerTimeout = time.Minute
		c.ReclaimIdle = 2 * time.Minute
	})
	publish(t, rdb, cfg.Stream, bets("e", 3)...)
	testkit.Eventually(t, 5*time.Second, "stalled", func() bool {
		return started.Load() > 0 && cfg.Watermark.Status().State == readiness.StateStalled
	})
	return s.observe(subject{loop: cfg.Watermark})
}

// running starts a consumer of a stream of the test's own on the shared
// Redis, with handler h and the stack's short windows, adjusted by adjust
// (when not nil) before it starts, and serves its tree.
func running(t *testing.T, h consumer.Handler, adjust func(*consumer.Config)) (*redis.Client, *stack, consumer.Config) {
	rdb, prefix := redistest.Client(t)
	s := newStack(t, supervisor.Config{})
	cfg := s.consumerConfig(rdb, stream(prefix), h)
	if adjust != nil {
		adjust(&cfg)
	}
	s.consumer(cfg)
	s.serve()
	return rdb, s, cfg
}

// privateRedis starts a redis-server of the test's own, to stop or pause,
// and a client of it whose calls give up after 300ms.
func privateRedis(t *testing.T) (*redistest.Server, *redis.Client) {
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 300 * time.Millisecond,
		WriteTimeout: 300 * time.Millisecond, DialTimeout: 300 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	return srv, rdb
}

// frozenOrDown runs a consumer on a private Redis, applies one entry, then
// breaks Redis with brk and waits for the loop to be failing; mend undoes
// brk after the observation.
func frozenOrDown(t *testing.T, brk, mend func(*redistest.Server)) observation {
	srv, rdb := privateRedis(t)
	s := newStack(t, supervisor.Config{})
	var applied atomic.Int64
	cfg := s.consumerConfig(rdb, event.StreamKey(platform.StreamWallet), counting(&applied),
		func(c *readiness.WatermarkConfig) { c.FailureBound = 3 })
	s.consumer(cfg)
	s.serve()
	publish(t, rdb, cfg.Stream, bets("e", 1)...)
	testkit.Eventually(t, 5*time.Second, "applied", func() bool { return applied.Load() == 1 })
	brk(srv)
	testkit.Eventually(t, 20*time.Second, "failing", func() bool { return cfg.Watermark.Status().State == readiness.StateFailing })
	o := s.observe(subject{loop: cfg.Watermark})
	if mend != nil {
		mend(srv)
	}
	return o
}

func redisFrozen(t *testing.T) observation {
	return frozenOrDown(t, (*redistest.Server).Pause, (*redistest.Server).Resume)
}

func redisDown(t *testing.T) observation {
	return frozenOrDown(t, (*redistest.Server).Stop, nil)
}

// outageThroughRestarts: Redis refuses for longer than the consumer's
// FailureLimit, so Serve returns, its supervisor restarts it, and it soon
// backs off. Its loop, parked after failing, stays failing.
func outageThroughRestarts(t *testing.T) observation {
	srv, rdb := privateRedis(t)
	s := newStack(t, supervisor.Config{FailureThreshold: 1, FailureBackoff: 10 * time.Second, BackoffJitter: suture.NoJitter{}})
	var applied atomic.Int64
	cfg := s.consumerConfig(rdb, event.StreamKey(platform.StreamWallet), counting(&applied))
	cfg.FailureLimit = 6
	s.consumer(cfg)
	s.serve()
	publish(t, rdb, cfg.Stream, bets("e", 1)...)
	testkit.Eventually(t, 5*time.Second, "applied", func() bool { return applied.Load() == 1 })
	srv.Stop()
	testkit.Eventually(t, 20*time.Second, "in backoff, its loop failing", func() bool {
		st, _ := s.tree.Status("consumer")
		return st.State.String() == "backoff" && cfg.Watermark.Status().State == readiness.StateFailing
	})
	return s.observe(subject{loop: cfg.Watermark})
}

// legacy publishes one schema_version 1 event.
func legacy(t *testing.T, rdb redis.UniversalClient, stream, id string) {
	publishRaw(t, rdb, stream, map[string]any{"event_id": id, "event_type": string(platform.BetSettledConfirmed),
		"schema_version": "1", "occurred_at": "2026-05-15T10:20:30Z", "aggregate_id": "bet-1", "payload": "{}"})
}

func legacyPolicy(policy consumer.AlertPolicy) scenario {
	return func(t *testing.T) observation {
		var applied atomic.Int64
		rdb, s, cfg := running(t, counting(&applied), func(c *consumer.Config) {
			c.AlertPolicy = policy
		})
		legacy(t, rdb, cfg.Stream, "old-1")
		publish(t, rdb, cfg.Stream, bets("e", 1)...)
		testkit.Eventually(t, 5*time.Second, "the legacy event surfaced, the next applied", func() bool {
			return applied.Load() == 1 && strings.Contains(cfg.Watermark.Status().Reason, "legacy_schema") &&
				cfg.Watermark.Status().State != readiness.StateIdle
		})
		o := s.observe(subject{loop: cfg.Watermark})
		if policy == consumer.AlertNotice {
			if n := s.readyBody()["notice/"+cfg.Watermark.String()]; !strings.HasPrefix(n, "legacy_schema: ") {
				t.Errorf("/ready?full=1 notice = %q, want the legacy notice", n)
			}
		}
		return o
	}
}

func legacyTrickleHung(t *testing.T) observation {
	var started atomic.Int64
	h, release := hung(&started)
	defer release()
	rdb, s, cfg := running(t, h, func(c *consumer.Config) {
		c.AlertPolicy = consumer.AlertHold
		c.HandlerTimeout, c.ReclaimIdle = time.Minute, 2*time.Minute
	})
	publish(t, rdb, cfg.Stream, bets("e", 2)...)
	testkit.Eventually(t, 5*time.Second, "the handler hangs", func() bool { return started.Load() > 0 })
	// The hung batch holds the loop: further entries wait behind it, so the
	// legacy ones are read and judged only in the batches already read.
	for i := range 5 {
		legacy(t, rdb, cfg.Stream, "old-"+strconv.Itoa(i))
	}
	testkit.Eventually(t, 5*time.Second, "stalled", func() bool { return cfg.Watermark.Status().State == readiness.StateStalled })
	return s.observe(subject{loop: cfg.Watermark})
}

func oneRetrying(t *testing.T) observation {
	var applied, stuck atomic.Int64
	h := func(_ context.Context, m *consumer.Message) error {
		if m.Envelope.EventID == "stuck" {
			stuck.Add(1)
			return errors.New("wallet service: 503")
		}
		applied.Add(1)
		return nil
	}
	rdb, s, cfg := running(t, h, func(c *consumer.Config) {
		c.ReclaimIdle = time.Minute // the entry waits for its redelivery throughout
	})
	publish(t, rdb, cfg.Stream, envelope("stuck", platform.BetSettledConfirmed, "bet-stuck"))
	testkit.Eventually(t, 5*time.Second, "the entry failed", func() bool { return stuck.Load() > 0 })
	publish(t, rdb, cfg.Stream, bets("e", 20)...)
	testkit.Eventually(t, 5*time.Second, "the others applied, then idle", func() bool {
		st := cfg.Watermark.Status()
		return applied.Load() == 20 && st.State == readiness.StateIdle && strings.Contains(st.Reason, "retrying 1")
	})
	return s.observe(subject{loop: cfg.Watermark})
}

func allFailing(err error) scenario {
	return func(t *testing.T) observation {
		rdb, s, cfg := running(t, func(context.Context, *consumer.Message) error { return err }, func(c *consumer.Config) {
			c.ReclaimIdle = time.Minute
		})
		publish(t, rdb, cfg.Stream, bets("e", 6)...)
		testkit.Eventually(t, 5*time.Second, "failing", func() bool { return cfg.Watermark.Status().State == readiness.StateFailing })
		return s.observe(subject{loop: cfg.Watermark})
	}
}

func badInputOnly(t *testing.T) observation {
	rdb, s, cfg := running(t, apply, nil)
	for i := range 6 {
		publishRaw(t, rdb, cfg.Stream, map[string]any{"event_id": "bad-" + strconv.Itoa(i),
			"event_type": string(platform.BetSettledConfirmed), "schema_version": "2"})
	}
	testkit.Eventually(t, 5*time.Second, "dead-lettered, progressing", func() bool {
		n, _ := rdb.XLen(context.Background(), cfg.Stream+":dlq").Result()
		return n == 6 && cfg.Watermark.Status().State == readiness.StateProgressing
	})
	return s.observe(subject{loop: cfg.Watermark})
}

func nogroupRecreate(t *testing.T) observation {
	var applied atomic.Int64
	rdb, s, cfg := running(t, counting(&applied), nil)
	publish(t, rdb, cfg.Stream, bets("a", 1)...)
	testkit.Eventually(t, 5*time.Second, "applied", func() bool { return applied.Load() == 1 })
	if err := rdb.XGroupDestroy(context.Background(), cfg.Stream, cfg.Group).Err(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "recreated and replayed", func() bool {
		st := cfg.Watermark.Status()
		return applied.Load() >= 2 && st.State == readiness.StateProgressing && strings.Contains(st.Reason, "notice: consumer group vanished")
	})
	return s.observe(subject{loop: cfg.Watermark})
}

func schemaV3(t *testing.T) observation {
	var applied atomic.Int64
	rdb, s, cfg := running(t, counting(&applied), nil)
	publishRaw(t, rdb, cfg.Stream, map[string]any{"event_id": "v3", "event_type": string(platform.BetSettledConfirmed),
		"schema_version": "3", "brand_id": "3", "occurred_at": "2026-05-15T10:20:30Z", "aggregate_id": "bet-1",
		"payload": "{}", "a_field_of_version_3": "x"})
	testkit.Eventually(t, 5*time.Second, "applied", func() bool {
		return applied.Load() == 1 && cfg.Watermark.Status().State == readiness.StateProgressing
	})
	return s.observe(subject{loop: cfg.Watermark})
}

func sentinelBare(t *testing.T) observation {
	rdb, s, cfg := running(t, apply, nil)
	publishRaw(t, rdb, cfg.Stream, map[string]any{"event_id": "sentinel-1",
		"event_type": string(platform.BrandAwarePublishingBegins), "schema_version": "2"})
	testkit.Eventually(t, 5*time.Second, "ignored", func() bool {
		return cfg.Watermark.Status().State == readiness.StateProgressing
	})
	return s.observe(subject{loop: cfg.Watermark})
}
