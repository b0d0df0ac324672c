package consumer_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/deadletter"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// attrOf returns the string (or int, formatted) value of attribute key.
func attrOf(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestProcessSpans: an event written in a producer's span is processed in
// a span of its own, a child of the producer's, with the messaging
// attributes and its outcome; the handler's context carries it, so the
// handler's spans nest under it, and the handler-duration histogram has
// the trace as an exemplar. An event that fails for good is dead-lettered
// with its trace context, its span ends in error, and after a redrive it
// is processed again in the same trace.
func TestProcessSpans(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	ctx := context.Background()
	stream := walletStream(prefix)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	// The producer: two events written in one traced request.
	pctx, produce := tp.Tracer("test").Start(ctx, "settle bet", trace.WithSpanKind(trace.SpanKindProducer))
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(pctx, carrier)
	produce.End()
	traced := func(id string) event.Envelope {
		e := envelope(id, platform.BetSettledConfirmed, "bet-"+id, 3, nil)
		e.TraceParent = carrier.Get(event.FieldTraceParent)
		return e
	}

	var fixed atomic.Bool
	var mu sync.Mutex
	inHandler := map[string]trace.SpanContext{}
	handler := func(ctx context.Context, m *consumer.Message) error {
		mu.Lock()
		inHandler[m.Envelope.EventID+"/"+m.ID] = trace.SpanContextFromContext(ctx)
		mu.Unlock()
		_, work := tp.Tracer("test").Start(ctx, "handler work")
		work.End()
		if m.Envelope.EventID == "broken" && !fixed.Load() {
			return consumer.Permanent(errors.New("a bug in the handler"))
		}
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	cfg.TracerProvider = tp
	h := start(t, cfg)
	ids := publish(t, rdb, stream, traced("ok"), traced("broken"))
	testkit.Eventually(t, 10*time.Second, "ok applied and broken dead-lettered", func() bool {
		return h.pending() == 0 && len(h.deadLetters()) == 1
	})

	spans := func(name string) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Name() == name {
				out = append(out, s)
			}
		}
		return out
	}
	process := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans("process " + stream) {
		process[attrOf(s, "messaging.message.id")] = s
	}
	producer := produce.SpanContext()
	ok, broken := process[ids[0]], process[ids[1]]
	if ok == nil || broken == nil {
		t.Fatalf("process spans by entry: %v, want one for %v", process, ids)
	}
	for _, s := range []sdktrace.ReadOnlySpan{ok, broken} {
		if s.Parent().SpanID() != producer.SpanID() || s.SpanContext().TraceID() != producer.TraceID() || s.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("%s: parent %v in trace %v (%v), want a consumer span, child of the producer's %v",
				attrOf(s, "headway.event.id"), s.Parent().SpanID(), s.SpanContext().TraceID(), s.SpanKind(), producer.SpanID())
		}
		for key, want := range map[string]string{"messaging.system": "redis", "messaging.operation.type": "process",
			"messaging.destination.name": stream, "messaging.consumer.group.name": "rolling_service",
			"messaging.client.id": "pod-a", "headway.event.type": string(platform.BetSettledConfirmed), "headway.brand_id": "3"} {
			if got := attrOf(s, key); got != want {
				t.Errorf("%s: %s = %q, want %q", attrOf(s, "headway.event.id"), key, got, want)
			}
		}
	}
	if attrOf(ok, "headway.outcome") != consumer.OutcomeApplied || ok.Status().Code == codes.Error {
		t.Errorf("ok: outcome %q, status %v", attrOf(ok, "headway.outcome"), ok.Status())
	}
	if attrOf(broken, "headway.outcome") != consumer.OutcomeDeadLettered || broken.Status().Code != codes.Error {
		t.Errorf("broken: outcome %q, status %v, want dead_lettered in error", attrOf(broken, "headway.outcome"), broken.Status())
	}
	// The handler's context carried its entry's span, and its own span
	// nested under it.
	mu.Lock()
	if got := inHandler["ok/"+ids[0]]; got.SpanID() != ok.SpanContext().SpanID() {
		t.Errorf("the handler's context carried span %v, want its process span %v", got.SpanID(), ok.SpanContext().SpanID())
	}
	mu.Unlock()
	nested := false
	for _, s := range spans("handler work") {
		nested = nested || s.Parent().SpanID() == ok.SpanContext().SpanID()
	}
	if !nested {
		t.Error("no span of the handler nested under the process span")
	}
	// The exemplar of the handler's duration names the trace.
	if !hasExemplar(t, h, producer.TraceID().String()) {
		t.Error("no handler-duration exemplar with the trace ID")
	}

	// The dead letter keeps the trace; its redrive is processed in it.
	letter := h.deadLetters()[0]
	if got, _ := letter.Values[event.FieldTraceParent].(string); got != carrier.Get(event.FieldTraceParent) {
		t.Fatalf("the dead letter's traceparent is %q, want the producer's", got)
	}
	fixed.Store(true)
	again, err := deadletter.Redrive(ctx, rdb, h.dlq, stream, letter.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the redriven entry processed in the producer's trace", func() bool {
		for _, s := range spans("process " + stream) {
			if attrOf(s, "messaging.message.id") == again {
				return attrOf(s, "headway.outcome") == consumer.OutcomeApplied && s.SpanContext().TraceID() == producer.TraceID() &&
					s.Parent().SpanID() == producer.SpanID()
			}
		}
		return false
	})
}

// hasExemplar reports whether a handler-duration bucket of h's registry
// has an exemplar with trace_id traceID.
func hasExemplar(t *testing.T, h *harness, traceID string) bool {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "headway_consumer_handler_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, b := range m.GetHistogram().GetBucket() {
				for _, l := range b.GetExemplar().GetLabel() {
					if l.GetName() == "trace_id" && l.GetValue() == traceID {
						return true
					}
				}
			}
		}
	}
	return false
}
