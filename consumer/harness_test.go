package consumer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// harness runs one consumer against a stream of its own.
type harness struct {
	t      *testing.T
	rdb    redis.UniversalClient
	stream string
	dlq    string
	reg    *prometheus.Registry
	c      *consumer.Consumer
	wm     *readiness.Watermark
	cancel context.CancelFunc
	done   chan error
	logs   *testkit.SyncBuffer
}

// fastConfig returns a config tuned for tests: short block, polls and
// windows.
func fastConfig(rdb redis.UniversalClient, stream string, handlers map[event.Type]consumer.Handler) consumer.Config {
	return consumer.Config{Catalog: platform.Catalog(),
		Client: rdb, Stream: stream, CatalogStream: platform.StreamWallet, Group: "rolling_service", Consumer: "pod-a",
		Handlers: handlers, Block: 50 * time.Millisecond, InfoInterval: 50 * time.Millisecond,
		HandlerTimeout: 2 * time.Second, ReclaimIdle: 3 * time.Second,
		Retry: consumer.RetryPolicy{Attempts: 3, Backoff: backoff.Exponential{Initial: time.Millisecond, Max: 5 * time.Millisecond}},
	}
}

// start builds the consumer from cfg and runs Serve until the test ends.
func start(t *testing.T, cfg consumer.Config) *harness {
	t.Helper()
	h := &harness{t: t, rdb: cfg.Client, stream: cfg.Stream, reg: prometheus.NewPedanticRegistry(), logs: &testkit.SyncBuffer{}}
	cfg.Registerer = h.reg
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(h.logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if cfg.Watermark == nil {
		wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "test", StallWindow: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Watermark = wm
	}
	h.wm = cfg.Watermark
	h.dlq = cfg.DeadLetterStream
	if h.dlq == "" {
		h.dlq = cfg.Stream + ":dlq"
	}
	c, err := consumer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	h.run()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.c.Serve(ctx) }()
}

// stop cancels Serve and waits for it to return.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(20 * time.Second):
		h.t.Errorf("Serve did not return within 20s of cancel")
	}
	h.cancel = nil
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

// envelope returns a valid event of type typ for aggregate agg.
func envelope(id string, typ event.Type, agg string, brand event.BrandID, payload any) event.Envelope {
	b, _ := json.Marshal(payload)
	return event.Envelope{EventID: id, EventType: typ, SchemaVersion: 2, BrandID: brand,
		OccurredAt: time.Now(), AggregateID: agg, Payload: b}
}

// publish appends envelopes and returns their entry IDs.
func publish(t *testing.T, rdb redis.UniversalClient, stream string, envs ...event.Envelope) []string {
	t.Helper()
	var ids []string
	for _, e := range envs {
		fields, err := event.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		id, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: fields}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// publishRaw appends raw fields, as a broken producer would.
func publishRaw(t *testing.T, rdb redis.UniversalClient, stream string, fields map[string]any) string {
	t.Helper()
	id, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: fields}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// onCommand is a go-redis hook for tests: it sees each single command with
// the rest of the chain to call (or not); dials and pipelines pass through.
type onCommand func(ctx context.Context, cmd redis.Cmder, next redis.ProcessHook) error

func (onCommand) DialHook(next redis.DialHook) redis.DialHook { return next }
func (onCommand) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (f onCommand) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { return f(ctx, cmd, next) }
}

// injected fails cmd with msg without sending it, as a failed round trip.
func injected(cmd redis.Cmder, msg string) error {
	err := errors.New("injected: " + msg)
	cmd.SetErr(err)
	return err
}

// trimWhilePending leaves t1 pending for pod-a of rolling_service (read,
// then pod-a crashed), publishes t2, and trims the stream to its last
// entry, as retention would: t1's data is gone while it is pending.
func trimWhilePending(t *testing.T, rdb redis.UniversalClient, stream string) {
	t.Helper()
	ctx := context.Background()
	if err := rdb.XGroupCreateMkStream(ctx, stream, "rolling_service", "0").Err(); err != nil {
		t.Fatal(err)
	}
	publish(t, rdb, stream, envelope("t1", platform.BetSettledConfirmed, "bet-1", 3, nil))
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "rolling_service", Consumer: "pod-a",
		Streams: []string{stream, ">"}, Count: 10}).Err(); err != nil {
		t.Fatal(err)
	}
	publish(t, rdb, stream, envelope("t2", platform.BetSettledConfirmed, "bet-2", 3, nil))
	if err := rdb.XTrimMaxLen(ctx, stream, 1).Err(); err != nil {
		t.Fatal(err)
	}
}

// pending returns the group's pending count.
func (h *harness) pending() int64 {
	p, err := h.rdb.XPending(context.Background(), h.stream, "rolling_service").Result()
	if err != nil {
		return -1
	}
	return p.Count
}

// deadLetters returns the dead-letter stream's entries.
func (h *harness) deadLetters() []redis.XMessage {
	msgs, _ := h.rdb.XRange(context.Background(), h.dlq, "-", "+").Result()
	return msgs
}

// counter reads one series of a counter vector by its label values.
func (h *harness) counter(name string, labels map[string]string) float64 {
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metric
				}
			}
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

func (h *harness) outcome(typ event.Type, outcome string) float64 {
	return h.counter("headway_consumer_entries_total", map[string]string{"event_type": string(typ), "outcome": outcome})
}

// recorder is a handler that records what it applied.
type recorder struct {
	mu      sync.Mutex
	applied []string // event IDs in order of completion
	count   map[string]int
}

func newRecorder() *recorder { return &recorder{count: map[string]int{}} }

func (r *recorder) handle(_ context.Context, m *consumer.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, m.Envelope.EventID)
	r.count[m.Envelope.EventID]++
	return nil
}

func (r *recorder) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.applied)
}

func (r *recorder) times(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[id]
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
