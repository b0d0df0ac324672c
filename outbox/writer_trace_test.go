package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/pgtest"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
)

// TestWriterStoresTheCallersTraceContext: with a Propagator, the writer
// stores the trace context of its caller's span in every event that has
// none of its own, and the relay carries it to the stream entry; an event
// with its own traceparent keeps it; without a Propagator nothing is read
// from the context.
func TestWriterStoresTheCallersTraceContext(t *testing.T) {
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	ts, err := trace.ParseTraceState("vendor=abc")
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled, TraceState: ts,
	})
	traced := trace.ContextWithSpanContext(ctx, sc)
	const want = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	own := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

	write := func(w *outbox.Writer, envs ...event.Envelope) {
		t.Helper()
		if err := pgx.BeginFunc(traced, db.Pool, func(tx pgx.Tx) error { return w.WriteBatch(traced, tx, 3, envs) }); err != nil {
			t.Fatal(err)
		}
	}
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix, Propagator: propagation.TraceContext{}})
	if err != nil {
		t.Fatal(err)
	}
	withOwn := env("own", platform.BetSettledConfirmed, "bet-2", 3)
	withOwn.TraceParent = own
	write(w, env("traced", platform.BetSettledConfirmed, "bet-1", 3), withOwn)
	plain, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	write(plain, env("untraced", platform.BetSettledConfirmed, "bet-3", 3))

	stored := func(id string) (tp, state string) {
		t.Helper()
		if err := db.Pool.QueryRow(ctx, "SELECT coalesce(traceparent, ''), coalesce(tracestate, '') FROM headway_outbox WHERE event_id = $1", id).Scan(&tp, &state); err != nil {
			t.Fatal(err)
		}
		return tp, state
	}
	if tp, state := stored("traced"); tp != want || state != "vendor=abc" {
		t.Errorf("traced: traceparent %q tracestate %q, want %q and vendor=abc", tp, state, want)
	}
	if tp, _ := stored("own"); tp != own {
		t.Errorf("own: traceparent %q, want its own %q", tp, own)
	}
	if tp, state := stored("untraced"); tp != "" || state != "" {
		t.Errorf("without a Propagator: traceparent %q tracestate %q, want none", tp, state)
	}

	runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, PollInterval: 20 * time.Millisecond})
	key := prefix + "events:{wallet}"
	testkit.Eventually(t, 10*time.Second, "the three events on the stream", func() bool { return len(streamEvents(t, rdb, key)) == 3 })
	for _, e := range streamEvents(t, rdb, key) {
		if e.EventID == "traced" && (e.TraceParent != want || e.TraceState != "vendor=abc") {
			t.Errorf("the stream entry of traced carries %q / %q", e.TraceParent, e.TraceState)
		}
	}
}

// TestRelayPublishSpan: with a TracerProvider, the relay's cycle is a
// producer span "send" linked to the producer span of each row it
// published, with the batch's counts.
func TestRelayPublishSpan(t *testing.T) {
	db, rdb, _, rec, tp, w := tracedOutbox(t)
	pctx, produce := tp.Tracer("test").Start(context.Background(), "settle bets", trace.WithSpanKind(trace.SpanKindProducer))
	envs := []event.Envelope{env("a", platform.BetSettledConfirmed, "bet-1", 3), env("b", platform.BetSettledConfirmed, "bet-2", 3)}
	if err := pgx.BeginFunc(pctx, db.Pool, func(tx pgx.Tx) error { return w.WriteBatch(pctx, tx, 3, envs) }); err != nil {
		t.Fatal(err)
	}
	produce.End()
	runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, PollInterval: 20 * time.Millisecond, TracerProvider: tp})
	var send sdktrace.ReadOnlySpan
	testkit.Eventually(t, 10*time.Second, "a send span", func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "send" {
				send = s
				return true
			}
		}
		return false
	})
	if send.SpanKind() != trace.SpanKindProducer || len(send.Links()) != 2 {
		t.Fatalf("send span: kind %v, %d links; want a producer span with 2 links", send.SpanKind(), len(send.Links()))
	}
	for _, l := range send.Links() {
		if l.SpanContext.SpanID() != produce.SpanContext().SpanID() {
			t.Errorf("link to %v, want the producer's span %v", l.SpanContext.SpanID(), produce.SpanContext().SpanID())
		}
	}
	attrs := map[string]string{}
	for _, kv := range send.Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs["messaging.operation.type"] != "send" || attrs["messaging.batch.message_count"] != "2" || attrs["headway.outbox.published"] != "2" {
		t.Errorf("send attributes %v", attrs)
	}
}

// TestTraceOfOneEvent: one event written in a traced request, published by
// a traced relay and applied by a traced consumer, is one trace: the
// request's span is the parent of the consumer's process span, which is
// the parent of the handler's own span; the relay's send span links to
// the request's. The relay's commit-to-publish latency carries the trace
// as its exemplar.
func TestTraceOfOneEvent(t *testing.T) {
	db, rdb, prefix, rec, tp, w := tracedOutbox(t)
	reqCtx, request := tp.Tracer("test").Start(context.Background(), "POST /bets/1/settle", trace.WithSpanKind(trace.SpanKindServer))
	if err := pgx.BeginFunc(reqCtx, db.Pool, func(tx pgx.Tx) error {
		return w.Write(reqCtx, tx, 3, env("one", platform.BetSettledConfirmed, "bet-1", 3))
	}); err != nil {
		t.Fatal(err)
	}
	request.End()
	reg := prometheus.NewPedanticRegistry()
	runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, PollInterval: 20 * time.Millisecond, TracerProvider: tp, Registerer: reg})
	handled := make(chan struct{}, 1)
	c, err := consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: prefix + "events:{wallet}",
		CatalogStream: platform.StreamWallet, Group: "rolling_service", Consumer: "pod-1", Block: 50 * time.Millisecond,
		TracerProvider: tp, Logger: quiet(),
		Handlers: map[event.Type]consumer.Handler{platform.BetSettledConfirmed: func(ctx context.Context, m *consumer.Message) error {
			_, work := tp.Tracer("test").Start(ctx, "UPDATE ledger")
			work.End()
			handled <- struct{}{}
			return nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("the event was not handled")
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	testkit.Eventually(t, 5*time.Second, "the send and process spans ended", func() bool {
		for _, s := range rec.Ended() {
			byName[s.Name()] = s
		}
		return byName["send"] != nil && byName["process "+prefix+"events:{wallet}"] != nil
	})
	cancel()
	<-done
	req, send, process, work := request.SpanContext(), byName["send"], byName["process "+prefix+"events:{wallet}"], byName["UPDATE ledger"]
	if process.Parent().SpanID() != req.SpanID() || process.SpanContext().TraceID() != req.TraceID() {
		t.Errorf("process span: parent %v, want the request's %v", process.Parent().SpanID(), req.SpanID())
	}
	if work == nil || work.Parent().SpanID() != process.SpanContext().SpanID() {
		t.Errorf("the handler's span is not a child of the process span")
	}
	if len(send.Links()) != 1 || send.Links()[0].SpanContext.SpanID() != req.SpanID() {
		t.Errorf("send span links %v, want the request's span", send.Links())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exemplar := false
	for _, mf := range mfs {
		if mf.GetName() == "headway_outbox_commit_to_publish_seconds" {
			for _, m := range mf.GetMetric() {
				for _, b := range m.GetHistogram().GetBucket() {
					for _, l := range b.GetExemplar().GetLabel() {
						exemplar = exemplar || (l.GetName() == "trace_id" && l.GetValue() == req.TraceID().String())
					}
				}
			}
		}
	}
	if !exemplar {
		t.Error("no commit-to-publish exemplar with the request's trace ID")
	}
}

// tracedOutbox returns a migrated outbox, a Redis client and key prefix,
// an SDK tracer provider recording into rec, and a writer that stores its
// caller's trace context.
func tracedOutbox(t *testing.T) (*pgtest.DB, *redis.Client, string, *tracetest.SpanRecorder, *sdktrace.TracerProvider, *outbox.Writer) {
	t.Helper()
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix, Propagator: propagation.TraceContext{}})
	if err != nil {
		t.Fatal(err)
	}
	return db, rdb, prefix, rec, tp, w
}
