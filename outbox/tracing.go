package outbox

import (
	"context"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the relay's spans.
const tracerName = "github.com/headwaylabs/headway/outbox"

// maxLinks bounds the links of one publish span (the SDK's default limit).
const maxLinks = 128

// publishSpan starts the span of one relay cycle's appends, with
// RelayConfig.TracerProvider: a producer span "send" (OpenTelemetry
// messaging conventions v1.30) linked to the producer span of each row
// that carries a trace context (up to maxLinks), so a trace shows when its
// event was published and with which batch. Nil without a provider.
func (r *Relay) publishSpan(rows []Row) trace.Span {
	if r.tracer == nil {
		return nil
	}
	var links []trace.Link
	for i := range rows {
		if len(links) == maxLinks {
			break
		}
		if rows[i].Envelope.TraceParent == "" {
			continue
		}
		ctx := r.prop.Extract(context.Background(), propagation.MapCarrier{
			"traceparent": rows[i].Envelope.TraceParent, "tracestate": rows[i].Envelope.TraceState})
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{
				attribute.String("headway.event.id", rows[i].Envelope.EventID)}})
		}
	}
	_, span := r.tracer.Start(context.Background(), "send", trace.WithSpanKind(trace.SpanKindProducer), trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.operation.name", "send"),
			attribute.Int("messaging.batch.message_count", len(rows)),
			attribute.String("headway.outbox.table", r.cfg.Table),
		))
	return span
}

// endPublish ends a cycle's publish span with what the cycle did.
func endPublish(span trace.Span, o Outcome, err error) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.Int("headway.outbox.published", len(o.Published)),
		attribute.Int("headway.outbox.failed", len(o.Failed)), attribute.Int("headway.outbox.parked", len(o.Parked)))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// observeLatency records a row's commit-to-publish latency; with a
// TracerProvider, a row whose traceparent is sampled gives its trace ID as
// the exemplar, so a slow bucket links to the event's trace.
func (r *Relay) observeLatency(seconds float64, traceparent string) {
	if r.tracer != nil {
		// 00-<32 hex trace ID>-<16 hex span ID>-<flags>; the codec checked
		// the form when the writer stored it.
		if f, err := strconv.ParseUint(traceparent[min(53, len(traceparent)):], 16, 8); len(traceparent) == 55 && err == nil && f&1 == 1 {
			if eo, ok := r.m.latency.(prometheus.ExemplarObserver); ok {
				eo.ObserveWithExemplar(seconds, prometheus.Labels{"trace_id": traceparent[3:35]})
				return
			}
		}
	}
	r.m.latency.Observe(seconds)
}
