package consumer

import (
	"context"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwaylabs/headway/event"
)

// Tracing (issue 21). With Config.TracerProvider, every entry of a batch
// gets a process span, following the OpenTelemetry semantic conventions
// for messaging (v1.30): named "process <stream>", of kind consumer, a
// child of the producer's span when the entry carries its traceparent
// (the outbox writer's Propagator puts it there), with the messaging.*
// attributes of a process operation and headway's own (event ID and type,
// brand, outcome, deliveries). It starts when the batch runs and ends
// once the entry's outcome is final, with an error status when the entry
// failed. A handler's context carries its entry's span, so spans the
// handler starts (its pgx or go-redis calls, when traced) nest under it;
// a BatchHandler's context carries none (its messages' spans are the
// entries'). Without a TracerProvider nothing of this runs.

// tracing is a consumer's tracer, propagator and constant attributes.
type tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	name   string
	attrs  []attribute.KeyValue
}

// tracerName is the instrumentation scope of the consumer's spans.
const tracerName = "github.com/headwaylabs/headway/consumer"

func newTracing(cfg Config) *tracing {
	if cfg.TracerProvider == nil {
		return nil
	}
	prop := cfg.Propagator
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	return &tracing{
		tracer: cfg.TracerProvider.Tracer(tracerName),
		prop:   prop,
		name:   "process " + cfg.Stream,
		attrs: []attribute.KeyValue{
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.operation.name", "process"),
			attribute.String("messaging.destination.name", cfg.Stream),
			attribute.String("messaging.consumer.group.name", cfg.Group),
			attribute.String("messaging.client.id", cfg.Consumer),
		},
	}
}

// fieldsCarrier reads an entry's fields as a propagation carrier.
type fieldsCarrier map[string]any

func (f fieldsCarrier) Get(key string) string { s, _ := f[key].(string); return s }
func (f fieldsCarrier) Set(string, string)    {}
func (f fieldsCarrier) Keys() []string {
	return []string{event.FieldTraceParent, event.FieldTraceState}
}

// startSpans starts the process span of every entry of items.
func (c *Consumer) startSpans(items []item) {
	if c.tr == nil {
		return
	}
	for i := range items {
		it := &items[i]
		f := fieldsCarrier(it.msg.Values)
		parent := c.tr.prop.Extract(context.Background(), f)
		brand, _ := strconv.ParseInt(f.Get(event.FieldBrandID), 10, 64)
		_, it.span = c.tr.tracer.Start(parent, c.tr.name, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(c.tr.attrs...),
			trace.WithAttributes(
				attribute.String("messaging.message.id", it.msg.ID),
				attribute.String("headway.event.id", f.Get(event.FieldEventID)),
				attribute.String("headway.event.type", f.Get(event.FieldEventType)),
				attribute.Int64("headway.brand_id", brand),
			))
	}
}

// endSpans records each entry's outcome on its span and ends it.
func (c *Consumer) endSpans(items []item) {
	if c.tr == nil {
		return
	}
	for i := range items {
		it := &items[i]
		if it.span == nil {
			continue
		}
		it.span.SetAttributes(attribute.String("headway.outcome", it.outcome), attribute.Int64("headway.deliveries", it.deliveries))
		switch it.outcome {
		case OutcomeRetryLater, OutcomeDeadLettered, OutcomeLostToTrim:
			if it.err != nil {
				it.span.RecordError(it.err)
				it.span.SetStatus(codes.Error, it.err.Error())
			} else {
				it.span.SetStatus(codes.Error, it.outcome)
			}
		}
		it.span.End()
		it.span = nil
	}
}

// observe records a handler's duration, with the trace of span as the
// exemplar when span is sampled (a slow bucket links to its trace).
func observe(obs prometheus.Observer, seconds float64, span trace.Span) {
	if span != nil {
		if sc := span.SpanContext(); sc.IsSampled() {
			if eo, ok := obs.(prometheus.ExemplarObserver); ok {
				eo.ObserveWithExemplar(seconds, prometheus.Labels{"trace_id": sc.TraceID().String()})
				return
			}
		}
	}
	obs.Observe(seconds)
}

// spanKeyProbe answers, for the key under which the trace package keeps a
// context's span, a non-nil value, and nil for any other key: the
// attemptContext of a traced entry gives its span for that key.
var spanKeyProbe = trace.ContextWithSpan(context.Background(), trace.SpanFromContext(context.Background()))
