package consumer

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fields a dead letter adds to the original entry's fields.
const (
	DLQFieldReason     = "dlq_reason"     // why: a brandguard reason, max_deliveries, handler_permanent
	DLQFieldError      = "dlq_error"      // the error text (at most 2 KiB; never the payload)
	DLQFieldStream     = "dlq_stream"     // the source stream key
	DLQFieldGroup      = "dlq_group"      // the consumer group
	DLQFieldConsumer   = "dlq_consumer"   // the consumer that gave up
	DLQFieldID         = "dlq_id"         // the entry ID in the source stream
	DLQFieldDeliveries = "dlq_deliveries" // Redis's delivery count at that time
	DLQFieldAt         = "dlq_at"         // when, RFC 3339 UTC
)

// deadLetter appends the entry with its original fields and the reason to
// the dead-letter stream and acknowledges it, in one MULTI/EXEC: it is never
// both gone from the group and absent from the dead-letter stream. When the
// write fails the entry stays pending and comes back later.
func (c *Consumer) deadLetter(ctx context.Context, it *item, reason string, cause error) {
	it.rejectReason, it.err = reason, cause
	c.deadLetterAll(ctx, []*item{it})
}

// deadLetterAll dead-letters items (each with rejectReason and err set) in
// one MULTI/EXEC: an XADD to the dead-letter stream and an XACK for each.
func (c *Consumer) deadLetterAll(ctx context.Context, items []*item) {
	if len(items) == 0 {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	texts := make([]string, len(items))
	_, err := c.rdb.TxPipelined(dctx, func(p redis.Pipeliner) error {
		for i, it := range items {
			texts[i] = "unknown"
			if it.err != nil {
				texts[i] = it.err.Error()
			}
			if len(texts[i]) > maxDeadLetterErrorText {
				texts[i] = texts[i][:maxDeadLetterErrorText]
			}
			values := make([]any, 0, 2*len(it.msg.Values)+16)
			for k, v := range it.msg.Values {
				values = append(values, k, v)
			}
			values = append(values,
				DLQFieldReason, it.rejectReason,
				DLQFieldError, texts[i],
				DLQFieldStream, c.cfg.Stream,
				DLQFieldGroup, c.cfg.Group,
				DLQFieldConsumer, c.cfg.Consumer,
				DLQFieldID, it.msg.ID,
				DLQFieldDeliveries, strconv.FormatInt(it.deliveries, 10),
				DLQFieldAt, time.Now().UTC().Format(time.RFC3339Nano),
			)
			p.XAdd(dctx, &redis.XAddArgs{Stream: c.cfg.DeadLetterStream, Values: values})
			p.XAck(dctx, c.cfg.Stream, c.cfg.Group, it.msg.ID)
		}
		return nil
	})
	for i, it := range items {
		attrs := []slog.Attr{slog.String(AttrEntryID, it.msg.ID), slog.String(AttrEventID, it.m.Envelope.EventID),
			slog.String(AttrEventType, string(it.m.Envelope.EventType)), slog.String(AttrReason, it.rejectReason),
			slog.Int64(AttrDeliveries, it.deliveries), slog.String(AttrError, texts[i])}
		if err != nil {
			it.outcome = OutcomeRetryLater
			c.log.LogAttrs(ctx, slog.LevelError, "dead-lettering failed: the entry stays pending",
				append(attrs, slog.String("dlq_error", err.Error()))...)
			continue
		}
		it.resolved, it.outcome = true, OutcomeDeadLettered
		c.series.deadLetter(it.rejectReason).Inc()
		c.log.LogAttrs(ctx, slog.LevelWarn, "entry dead-lettered", attrs...)
	}
}
