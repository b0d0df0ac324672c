package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/deadletter"
	"github.com/headwaylabs/headway/event"
)

// Fields a dead letter adds to the original entry's fields: aliases of
// the deadletter package's constants, which define the format.
const (
	DLQFieldReason     = deadletter.FieldReason
	DLQFieldError      = deadletter.FieldError
	DLQFieldStream     = deadletter.FieldStream
	DLQFieldGroup      = deadletter.FieldGroup
	DLQFieldConsumer   = deadletter.FieldConsumer
	DLQFieldID         = deadletter.FieldID
	DLQFieldDeliveries = deadletter.FieldDeliveries
	DLQFieldAt         = deadletter.FieldAt
	DLQFieldTruncated  = deadletter.FieldTruncated
)

// maxCopiedField bounds each field value a dead letter copies from an
// entry over the size limit.
const maxCopiedField = 4096

// maxCopiedFields bounds how many fields a dead letter copies: the script
// passes an entry's fields to XADD as arguments, and Lua unpacks at most
// about 8,000 values. An entry with more fields is copied as by
// boundedFields, its envelope fields first.
const maxCopiedFields = 1000

// ErrDeadLetterKey: the dead-letter key holds something other than a
// stream, so no entry could be dead-lettered; Serve refuses to start.
var ErrDeadLetterKey = errors.New("consumer: dead-letter key is not a stream")

// deadLetterScript appends each entry to the dead-letter stream and only
// then acknowledges it, stopping at the first command that fails. Redis
// runs a script without interleaving, but it does not roll back: unlike
// MULTI/EXEC, which runs the XACK even after a queued XADD failed at run
// time (WRONGTYPE, OOM), the script never reaches an entry's XACK unless
// its XADD succeeded. An entry that is no longer pending for this consumer
// (another consumer claimed it while this one was paused, or it was
// acknowledged meanwhile) is skipped: XACK does not check the owner, and
// would take it off the other consumer's pending list.
//
// KEYS[1] is the dead-letter stream, KEYS[2] the source; ARGV[1] the group,
// ARGV[2] the consumer, then for each entry its ID, the number n of field
// and value arguments, and those n arguments. It returns {statuses, error
// or "", the command that failed or ""}: one status per entry handled
// before it stopped, 1 dead-lettered, 0 skipped.
var deadLetterScript = redis.NewScript(`
local out, i = {}, 3
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  local p = redis.pcall('XPENDING', KEYS[2], ARGV[1], id, id, 1)
  if p.err then return {out, p.err, 'check'} end
  if #p == 0 or p[1][2] ~= ARGV[2] then
    out[#out + 1] = 0
  else
    local r = redis.pcall('XADD', KEYS[1], '*', unpack(ARGV, i + 2, i + 1 + n))
    if type(r) == 'table' and r.err then return {out, r.err, 'add'} end
    r = redis.pcall('XACK', KEYS[2], ARGV[1], id)
    if type(r) == 'table' and r.err then return {out, r.err, 'ack'} end
    out[#out + 1] = 1
  end
  i = i + 2 + n
end
return {out, '', ''}
`)

// maxDeadLetterCall bounds the bytes of entries one script call carries, so
// that a batch of large rejects is sent in calls that fit opTimeout.
const maxDeadLetterCall = 4 << 20

// deadLetter appends the entry with its original fields and the reason to
// the dead-letter stream and then acknowledges it, in one script: it is
// never gone from the group without being in the dead-letter stream. When
// the append fails the entry stays pending and comes back later.
func (c *Consumer) deadLetter(ctx context.Context, it *item, reason string, cause error) {
	it.rejectReason, it.err = reason, cause
	c.deadLetterAll(ctx, []*item{it})
}

// deadLetterAll dead-letters items (each with rejectReason and err set),
// in order, with deadLetterScript: one call per maxDeadLetterCall bytes of
// entries.
func (c *Consumer) deadLetterAll(ctx context.Context, items []*item) {
	for len(items) > 0 {
		n, size := 0, 0
		for n < len(items) && (n == 0 || size < maxDeadLetterCall) {
			size += entrySize(items[n].msg.Values)
			n++
		}
		c.deadLetterCall(ctx, items[:n])
		items = items[n:]
	}
}

// entrySize is the bytes of an entry's field names and string values.
func entrySize(values map[string]any) int {
	size := 0
	for k, v := range values {
		s, _ := v.(string)
		size += len(k) + len(s)
	}
	return size
}

// deadLetterCall dead-letters items in one script call and sets their
// outcomes: dead_lettered; deferred when another consumer holds the entry
// now; retry_later (left pending, counted in dead_letter_failures_total)
// when the script failed, or did not answer in time — then whether it ran
// is unknown, and the log says so.
func (c *Consumer) deadLetterCall(ctx context.Context, items []*item) {
	dctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	texts := make([]string, len(items))
	args := make([]any, 2, 2+len(items)*(2+2*12+16))
	args[0], args[1] = c.cfg.Group, c.cfg.Consumer
	for i, it := range items {
		texts[i] = "unknown"
		if it.err != nil {
			texts[i] = it.err.Error()
		}
		if len(texts[i]) > maxDeadLetterErrorText {
			texts[i] = texts[i][:maxDeadLetterErrorText]
		}
		at := len(args)
		args = append(args, it.msg.ID, 0)
		values := it.msg.Values
		if len(values) > maxCopiedFields {
			values = boundedFields(values)
		}
		for k, v := range values {
			args = append(args, k, v)
		}
		args = append(args,
			DLQFieldReason, it.rejectReason,
			DLQFieldError, texts[i],
			DLQFieldStream, c.cfg.Stream,
			DLQFieldGroup, c.cfg.Group,
			DLQFieldConsumer, c.cfg.Consumer,
			DLQFieldID, it.msg.ID,
			DLQFieldDeliveries, strconv.FormatInt(it.deliveries, 10),
			DLQFieldAt, time.Now().UTC().Format(time.RFC3339Nano),
		)
		args[at+1] = len(args) - at - 2
	}
	var statuses []any
	failed, unknown, err := "", false, error(nil)
	res, rerr := deadLetterScript.Run(dctx, c.rdb, []string{c.cfg.DeadLetterStream, c.cfg.Stream}, args...).Slice()
	switch {
	case rerr != nil:
		// A Redis error reply means the script did not run (or stopped at
		// a Lua error before writing); anything else — a timeout, a broken
		// connection — leaves it unknown whether it ran.
		var rediserr redis.Error
		unknown = !errors.As(rerr, &rediserr)
		err = rerr
	case len(res) == 3:
		statuses, _ = res[0].([]any)
		if msg, _ := res[1].(string); msg != "" {
			failed, _ = res[2].(string)
			err = errors.New(msg)
		}
	default:
		err = fmt.Errorf("dead-letter script: unexpected reply %v", res)
	}
	for i, it := range items {
		attrs := []slog.Attr{slog.String(AttrEntryID, it.msg.ID), slog.String(AttrEventID, it.m.Envelope.EventID),
			slog.String(AttrEventType, string(it.m.Envelope.EventType)), slog.String(AttrReason, it.rejectReason),
			slog.Int64(AttrDeliveries, it.deliveries), slog.String(AttrError, texts[i])}
		switch {
		case i < len(statuses) && statuses[i] == int64(1):
			it.resolved, it.outcome = true, OutcomeDeadLettered
			c.series.deadLetter(it.rejectReason).Inc()
			c.log.LogAttrs(ctx, slog.LevelWarn, "entry dead-lettered", attrs...)
		case i < len(statuses):
			it.outcome, it.notOurs = OutcomeDeferred, true
			c.log.LogAttrs(ctx, slog.LevelWarn, "entry not dead-lettered: it is no longer pending for this consumer (another consumer claimed it, or it was acknowledged)", attrs...)
		case i == len(statuses) && failed == "ack":
			// In the dead-letter stream, still pending: it comes back and
			// is dead-lettered again (a duplicate dead letter, nothing lost).
			it.outcome = OutcomeRetryLater
			c.series.dlqFailures.Inc()
			c.log.LogAttrs(ctx, slog.LevelError, "entry dead-lettered but its acknowledgement failed: it stays pending and will be dead-lettered again",
				append(attrs, slog.String("dlq_failure", err.Error()))...)
		case unknown:
			it.outcome = OutcomeRetryLater
			c.series.dlqFailures.Inc()
			c.log.LogAttrs(ctx, slog.LevelError, "dead-lettering did not answer in time: the entry is either dead-lettered and acknowledged, or still pending and will be dead-lettered again",
				append(attrs, slog.String("dlq_failure", err.Error()))...)
		default:
			it.outcome = OutcomeRetryLater
			c.series.dlqFailures.Inc()
			c.log.LogAttrs(ctx, slog.LevelError, "dead-lettering failed: the entry was not acknowledged and stays pending",
				append(attrs, slog.String("dlq_failure", err.Error()))...)
		}
	}
}

// envelopeFields are kept first when a dead letter cannot copy every field.
var envelopeFields = []string{event.FieldEventID, event.FieldEventType, event.FieldSchemaVersion, event.FieldBrandID,
	event.FieldOccurredAt, event.FieldAggregateID, event.FieldPayload, event.FieldTraceParent, event.FieldTraceState}

// boundedFields returns the fields of an entry that was over the codec's
// size limit (or had more than maxCopiedFields fields), without those over
// maxCopiedField bytes and with at most maxCopiedFields fields, envelope
// fields first, plus DLQFieldTruncated saying what was left out: the
// consumer holds and dead-letters this copy, never the entry itself.
func boundedFields(values map[string]any) map[string]any {
	size := entrySize(values)
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	// Envelope fields first, then the others in a stable order.
	slices.SortFunc(keys, func(a, b string) int {
		ea, eb := slices.Contains(envelopeFields, a), slices.Contains(envelopeFields, b)
		if ea != eb {
			if ea {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	out := make(map[string]any, min(len(values), maxCopiedFields)+1)
	var dropped []string
	for _, k := range keys {
		s, _ := values[k].(string)
		if len(k)+len(s) > maxCopiedField || len(out) >= maxCopiedFields {
			dropped = append(dropped, k)
			continue
		}
		out[k] = values[k]
	}
	note := strings.Join(dropped, ",")
	if len(dropped) > 20 {
		note = strings.Join(dropped[:20], ",") + fmt.Sprintf(" and %d more", len(dropped)-20)
	}
	out[DLQFieldTruncated] = fmt.Sprintf("entry of %d bytes in %d fields; left out: %s", size, len(values), note)
	return out
}

// checkDeadLetterKey refuses a dead-letter key that exists and is not a
// stream: every dead letter would fail, and entries that cannot succeed
// would stay pending for ever.
func (c *Consumer) checkDeadLetterKey(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	typ, err := c.rdb.Type(tctx, c.cfg.DeadLetterStream).Result()
	if err != nil {
		return fmt.Errorf("check dead-letter key %s: %w", c.cfg.DeadLetterStream, err)
	}
	if typ != "none" && typ != "stream" {
		return fmt.Errorf("%w: %s holds a %s", ErrDeadLetterKey, c.cfg.DeadLetterStream, typ)
	}
	return nil
}
