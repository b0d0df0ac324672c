package retention_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/retention"
	"github.com/headwaylabs/headway/supervisor"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newKeeper(t *testing.T, rdb redis.Scripter, reg prometheus.Registerer, log *slog.Logger, streams ...retention.Stream) *retention.Keeper {
	t.Helper()
	if log == nil {
		log = quiet()
	}
	k, err := retention.NewKeeper(retention.KeeperConfig{Client: rdb, Streams: streams, Registerer: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keeperTrim(t *testing.T, k *retention.Keeper, stream string) retention.Result {
	t.Helper()
	r, err := k.Trim(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// gauge returns the value of gauge name with the given labels in reg, or
// -1 when no such series exists.
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// encoded returns the stream fields of a valid event id of aggregate agg.
func encoded(t *testing.T, id, agg string) []any {
	t.Helper()
	fields, err := event.Encode(event.Envelope{EventID: id, EventType: platform.BetSettledConfirmed,
		SchemaVersion: 2, BrandID: 3, OccurredAt: time.Now(), AggregateID: agg, Payload: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	return fields
}

// TestKeeperStoppedGroupHoldsTheStream: a group that stopped with entries
// pending holds the stream whatever its length; the keeper trims nothing
// it needs, reports the stream over its bound and names the group with
// what it holds; once the group catches up, the stream is trimmed and
// back within its bound, and the group's series is gone.
func TestKeeperStoppedGroupHoldsTheStream(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream := prefix + "held"
	for _, g := range []string{"live", "stopped"} {
		if err := rdb.XGroupCreateMkStream(ctx, stream, g, "$").Err(); err != nil {
			t.Fatal(err)
		}
	}
	ids := fill(t, rdb, stream, 50)
	rdb.XAck(ctx, stream, "live", read(t, rdb, stream, "live", 50)...)
	pending := read(t, rdb, stream, "stopped", 5) // delivered, never acknowledged: the pod stopped
	reg := prometheus.NewPedanticRegistry()
	var logs testkit.SyncBuffer
	k := newKeeper(t, rdb, reg, slog.New(slog.NewJSONHandler(&logs, nil)),
		retention.Stream{Key: stream, Policy: retention.Policy{MaxLength: 20}})

	r := keeperTrim(t, k, stream)
	if r.Trimmed != 0 || r.Length != 50 || r.HeldBy != "stopped" || r.HeldPending != 5 || r.HeldLag != 45 ||
		!r.OverBound || r.Oldest != ids[0] || r.TrimmedUnread != 0 {
		t.Fatalf("stopped group: %+v, want nothing trimmed, 50 held by group stopped (5 pending, 45 undelivered), over the bound", r)
	}
	s := map[string]string{"stream": stream}
	if v := gauge(t, reg, "headway_retention_over_bound", map[string]string{"stream": stream, "kind": retention.KindStream}); v != 1 {
		t.Errorf("over_bound = %v, want 1", v)
	}
	if v := gauge(t, reg, "headway_retention_held_entries", map[string]string{"stream": stream, "group": "stopped"}); v != 50 {
		t.Errorf("held_entries{group=stopped} = %v, want 50", v)
	}
	if v := gauge(t, reg, "headway_retention_stream_length", s); v != 50 {
		t.Errorf("stream_length = %v, want 50", v)
	}
	if v := gauge(t, reg, "headway_retention_max_length", s); v != 20 {
		t.Errorf("max_length = %v, want 20", v)
	}
	if !strings.Contains(logs.String(), `"msg":"stream over its retention bound`) || !strings.Contains(logs.String(), `"held_by":"stopped"`) {
		t.Errorf("no warning naming the group that holds the stream:\n%s", logs.String())
	}

	// The group comes back: it acknowledges its pending entries and reads
	// on to entry 40.
	rdb.XAck(ctx, stream, "stopped", pending...)
	rdb.XAck(ctx, stream, "stopped", read(t, rdb, stream, "stopped", 35)...)
	r = keeperTrim(t, k, stream)
	if r.Trimmed != 40 || r.Length != 10 || r.Oldest != ids[40] || r.OverBound || r.HeldBy != "stopped" {
		t.Fatalf("caught up to 40: %+v, want 40 trimmed, 10 left from entry 40, within the bound", r)
	}
	rdb.XAck(ctx, stream, "stopped", read(t, rdb, stream, "stopped", 10)...)
	r = keeperTrim(t, k, stream)
	if r.Length != 0 || r.Oldest != "" || r.OldestAge != 0 {
		t.Fatalf("caught up: %+v, want an empty stream", r)
	}
	if v := gauge(t, reg, "headway_retention_over_bound", s); v != 0 {
		t.Errorf("over_bound = %v, want 0", v)
	}
	// Held by the last group to acknowledge, which needs nothing now
	// that the stream is empty: its series goes once no group holds it.
	if v := gauge(t, reg, "headway_retention_trimmed_entries_total", s); v != 50 {
		t.Errorf("trimmed_entries_total = %v, want 50", v)
	}
	if !strings.Contains(logs.String(), `"msg":"stream back within its retention bound"`) {
		t.Errorf("no record of the stream coming back within its bound:\n%s", logs.String())
	}
}

// TestKeeperTrimUnreadCountsTheLoss: with TrimUnread, a stream held by a
// stopped group is trimmed to its MaxLength: every entry removed before
// the group acknowledged it is counted as trimmed unread, and the
// group's consumer, when it comes back, counts its pending entries that
// went as lost_to_trim and applies what is left.
func TestKeeperTrimUnreadCountsTheLoss(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := prefix + event.StreamKey(platform.StreamWallet)
	if err := rdb.XGroupCreateMkStream(ctx, stream, "g", "$").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: encoded(t, fmt.Sprintf("e%d", i), "a")}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	read(t, rdb, stream, "g", 5) // pending on a pod that stopped
	reg := prometheus.NewPedanticRegistry()
	k := newKeeper(t, rdb, reg, nil, retention.Stream{Key: stream,
		Policy: retention.Policy{MinCount: 5, MaxLength: 20, TrimUnread: true}})
	r := keeperTrim(t, k, stream)
	if r.Trimmed != 0 || r.TrimmedUnread != 30 || r.Length != 20 || r.OverBound {
		t.Fatalf("%+v: want 30 trimmed unread (5 pending, 25 undelivered), 20 left, within the bound", r)
	}
	if v := gauge(t, reg, "headway_retention_trimmed_unread_entries_total", map[string]string{"stream": stream}); v != 30 {
		t.Errorf("trimmed_unread_entries_total = %v, want 30", v)
	}

	creg := prometheus.NewPedanticRegistry()
	var mu sync.Mutex
	applied := map[string]bool{}
	done := serveWallet(t, ctx, rdb, stream, "pod-2", func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		applied[m.Envelope.EventID] = true
		mu.Unlock()
		return nil
	}, creg, func(c *consumer.Config) {
		c.HandlerTimeout, c.ReclaimIdle, c.ReclaimInterval = 50*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	})
	testkit.Eventually(t, 10*time.Second, "the 20 entries left applied and the 5 pending counted as lost", func() bool {
		mu.Lock()
		n := len(applied)
		mu.Unlock()
		return n == 20 && counter(t, creg, "headway_consumer_lost_to_trim_total") == 5
	})
	cancel()
	<-done
	for i := 30; i < 50; i++ {
		if !applied[fmt.Sprintf("e%d", i)] {
			t.Errorf("e%d, one of the 20 newest, was not applied", i)
		}
	}
}

// TestKeeperDeadLetterStream: a dead-letter stream (no group) is trimmed
// by age alone with DeadLetter, kept whole without it, and reported over
// its bound when it holds more than MaxLength dead letters younger than
// MinAge; a bound on age reports entries older than MaxAge.
func TestKeeperDeadLetterStream(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	dlq, plain := prefix+"dlq", prefix+"plain"
	old := time.Now().Add(-3 * time.Hour).UnixMilli()
	for _, s := range []string{dlq, plain} {
		for i := range 3 { // three dead letters of three hours ago
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: s, ID: fmt.Sprintf("%d-%d", old, i+1), Values: []any{"i", i}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
		fill(t, rdb, s, 10)
	}
	reg := prometheus.NewPedanticRegistry()
	k := newKeeper(t, rdb, reg, nil,
		retention.Stream{Key: dlq, Policy: retention.Policy{DeadLetter: true, MinAge: time.Hour, MaxLength: 5}},
		retention.Stream{Key: plain, Policy: retention.Policy{MinAge: time.Hour, MaxAge: 2 * time.Hour}})
	if r := keeperTrim(t, k, dlq); r.Trimmed != 3 || r.Length != 10 || !r.OverBound || r.HeldBy != "" {
		t.Fatalf("dead letters: %+v, want the 3 older than MinAge trimmed, 10 left, over MaxLength 5", r)
	}
	if v := gauge(t, reg, "headway_retention_over_bound", map[string]string{"stream": dlq, "kind": retention.KindDeadLetter}); v != 1 {
		t.Errorf("over_bound{kind=dead_letter} = %v, want 1", v)
	}
	r := keeperTrim(t, k, plain)
	if r.Trimmed != 0 || r.Length != 13 || !r.OverBound || r.OldestAge < 3*time.Hour-time.Minute {
		t.Fatalf("no group, no DeadLetter: %+v, want everything kept, over MaxAge 2h (oldest 3h)", r)
	}
	if v := gauge(t, reg, "headway_retention_oldest_entry_age_seconds", map[string]string{"stream": plain}); v < 3*3600-60 {
		t.Errorf("oldest_entry_age_seconds = %v, want about 3h", v)
	}
}

// TestKeeperJobHealth: the keeper's job trims its stream on schedule and
// is healthy; when Redis stops answering, its runs fail, the error is
// kept in the keeper's status, and the job's health turns failing.
func TestKeeperJobHealth(t *testing.T) {
	srv := redistest.StartServer(t, redistest.ServerOptions{})
	rdb := srv.Client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := "events:{jobs}"
	if err := rdb.XGroupCreateMkStream(ctx, stream, "g", "$").Err(); err != nil {
		t.Fatal(err)
	}
	fill(t, rdb, stream, 8)
	rdb.XAck(ctx, stream, "g", read(t, rdb, stream, "g", 8)...)
	k, err := retention.NewKeeper(retention.KeeperConfig{Client: rdb, Interval: 20 * time.Millisecond,
		Streams: []retention.Stream{{Key: stream}}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	jobs := k.Jobs()
	if len(jobs) != 1 || jobs[0].Name != retention.JobName(stream) || retention.JobName(stream) != "retention:"+stream {
		t.Fatalf("jobs %+v, want one named retention:%s", jobs, stream)
	}
	job, err := supervisor.NewJob(jobs[0])
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- job.Serve(ctx) }()
	testkit.Eventually(t, 5*time.Second, "the job trimmed the 8 acknowledged entries and is ok", func() bool {
		l, err := rdb.XLen(ctx, stream).Result()
		return err == nil && l == 0 && job.Health().Status().State == readiness.StateOK
	})
	srv.Stop()
	testkit.Eventually(t, 10*time.Second, "the job failing once Redis is gone", func() bool {
		return job.Health().Status().State == readiness.StateFailing
	})
	st := k.Status()
	if len(st) != 1 || st[0].Err == nil || st[0].At.IsZero() {
		t.Errorf("status %+v, want the last error kept beside the last success", st)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Serve returned %v", err)
	}
}

// TestKeeperBoundsAStreamUnderLoad: under continuous publishing with a
// consumer group applying, the keeper's job keeps the stream within its
// bound at every sample, never trims an entry before the group has
// acknowledged it (every event applied, lost_to_trim 0, nothing trimmed
// unread) and never reports it over its bound.
func TestKeeperBoundsAStreamUnderLoad(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := prefix + event.StreamKey(platform.StreamWallet)
	const n, bound = 3000, 1500
	if err := rdb.XGroupCreateMkStream(ctx, stream, "g", "$").Err(); err != nil {
		t.Fatal(err)
	}
	var applied atomic.Int64
	creg := prometheus.NewPedanticRegistry()
	consumed := serveWallet(t, ctx, rdb, stream, "pod", func(context.Context, *consumer.Message) error {
		applied.Add(1)
		return nil
	}, creg)

	reg := prometheus.NewPedanticRegistry()
	k, err := retention.NewKeeper(retention.KeeperConfig{Client: rdb, Interval: 50 * time.Millisecond, Registerer: reg,
		Logger: quiet(), Streams: []retention.Stream{{Key: stream, Policy: retention.Policy{MinCount: 100, MaxLength: bound}}}})
	if err != nil {
		t.Fatal(err)
	}
	job, err := supervisor.NewJob(k.Jobs()[0])
	if err != nil {
		t.Fatal(err)
	}
	kept := make(chan error, 1)
	go func() { kept <- job.Serve(ctx) }()

	// Sample the length and the bound metric while publishing, at about
	// 1000 events a second.
	var maxLen atomic.Int64
	var over atomic.Bool
	sampling, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampling:
				return
			case <-tick.C:
			}
			if l, err := rdb.XLen(ctx, stream).Result(); err == nil && l > maxLen.Load() {
				maxLen.Store(l)
			}
			if k.Status()[0].Result.OverBound {
				over.Store(true)
			}
		}
	}()
	for i := range n {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: encoded(t, fmt.Sprintf("e%d", i), fmt.Sprintf("a%d", i%31))}).Err(); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			time.Sleep(10 * time.Millisecond) // the publishing rate
		}
	}
	testkit.Eventually(t, 30*time.Second, "every event applied", func() bool { return applied.Load() == n })
	testkit.Eventually(t, 5*time.Second, "the stream trimmed to its MinCount", func() bool {
		l, err := rdb.XLen(ctx, stream).Result()
		return err == nil && l == 100
	})
	close(sampling)
	<-sampled
	cancel()
	<-consumed
	<-kept
	t.Logf("longest the stream was: %d entries (bound %d)", maxLen.Load(), bound)
	if maxLen.Load() > bound {
		t.Errorf("the stream reached %d entries, over its bound %d", maxLen.Load(), bound)
	}
	if over.Load() {
		t.Error("the stream was reported over its bound")
	}
	if lost := counter(t, creg, "headway_consumer_lost_to_trim_total"); lost != 0 {
		t.Errorf("lost_to_trim_total = %v, want 0", lost)
	}
	if v := counter(t, reg, "headway_retention_trimmed_unread_entries_total"); v != 0 {
		t.Errorf("trimmed_unread_entries_total = %v, want 0", v)
	}
	if v := counter(t, reg, "headway_retention_trimmed_entries_total"); v != n-100 {
		t.Errorf("trimmed_entries_total = %v, want %d", v, n-100)
	}
}

// serveWallet runs a consumer "<name>" of group g on stream, a wallet
// stream, with h for settled bets and its metrics in reg, until ctx ends;
// the channel gets Serve's error. tune adjusts its config.
func serveWallet(t *testing.T, ctx context.Context, rdb redis.UniversalClient, stream, name string, h consumer.Handler,
	reg prometheus.Registerer, tune ...func(*consumer.Config)) <-chan error {
	t.Helper()
	cfg := consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: stream,
		CatalogStream: platform.StreamWallet, Group: "g", Consumer: name,
		Handlers: map[event.Type]consumer.Handler{platform.BetSettledConfirmed: h},
		Block:    50 * time.Millisecond, Registerer: reg, Logger: quiet()}
	for _, f := range tune {
		f(&cfg)
	}
	c, err := consumer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	return done
}
