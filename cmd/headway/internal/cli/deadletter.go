package cli

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/deadletter"
	"github.com/headwaylabs/headway/event"
)

// DeadLetter is one dead-lettered entry as dlq list, show and redrive
// report it.
type DeadLetter struct {
	Stream         string `json:"stream"`          // catalog stream name
	DeadLetterKey  string `json:"dead_letter_key"` // the dead-letter stream's key
	ID             string `json:"id"`              // the entry ID in the dead-letter stream
	EventID        string `json:"event_id"`
	EventType      string `json:"event_type"`
	SchemaVersion  string `json:"schema_version"`
	Reason         string `json:"reason"`
	Error          string `json:"error"`
	SourceStream   string `json:"source_stream"` // dlq_stream
	SourceID       string `json:"source_id"`     // dlq_id
	Group          string `json:"group"`
	Consumer       string `json:"consumer"`
	Deliveries     int64  `json:"deliveries"`
	DeadLetteredAt string `json:"dead_lettered_at"`
	// Legacy: schema_version 1 or reason legacy_schema; consumers reject
	// such an entry again, so redrive refuses it without --force.
	Legacy bool `json:"legacy"`
	// Fields are the original entry's fields, without the dlq_* ones
	// (dlq show only).
	Fields map[string]string `json:"fields,omitempty"`

	letter deadletter.Letter
}

// knownReasons are the dead-letter reasons the consumer writes.
func knownReasons() []string {
	out := []string{consumer.ReasonMaxDeliveries, consumer.ReasonHandlerPermanent}
	for _, r := range brandguard.Reasons {
		if r != brandguard.ReasonRetiredType { // ignored, never dead-lettered
			out = append(out, string(r))
		}
	}
	sort.Strings(out)
	return out
}

func newDeadLetter(ref streamRef, msg redis.XMessage) DeadLetter {
	l := deadletter.Parse(msg)
	dl := DeadLetter{
		Stream: ref.Name, DeadLetterKey: ref.DLQ, ID: l.ID,
		EventID:        l.Fields[event.FieldEventID],
		EventType:      l.Fields[event.FieldEventType],
		SchemaVersion:  l.Fields[event.FieldSchemaVersion],
		Reason:         l.Reason,
		Error:          l.Error,
		SourceStream:   l.SourceStream,
		SourceID:       l.SourceID,
		Group:          l.Group,
		Consumer:       l.Consumer,
		Deliveries:     l.Deliveries,
		DeadLetteredAt: l.At,
		letter:         l,
	}
	dl.Legacy = dl.SchemaVersion == "1" || dl.Reason == string(brandguard.ReasonLegacySchema)
	return dl
}

// dlFilter selects dead letters; empty sets match everything.
type dlFilter struct {
	reasons map[string]bool
	types   map[string]bool
}

func (f dlFilter) match(dl DeadLetter) bool {
	return (len(f.reasons) == 0 || f.reasons[dl.Reason]) && (len(f.types) == 0 || f.types[dl.EventType])
}

// filterFlags are --reason and --type.
type filterFlags struct{ reasons, types listFlag }

func (ff *filterFlags) register(fs *flag.FlagSet) {
	fs.Var(&ff.reasons, "reason", "only entries dead-lettered for this `reason` (repeatable or comma-separated): "+strings.Join(knownReasons(), ", "))
	fs.Var(&ff.types, "type", "only entries of this event `type` (repeatable or comma-separated), e.g. BET_SETTLED_CONFIRMED")
}

func (ff *filterFlags) filter() (dlFilter, error) {
	f := dlFilter{reasons: map[string]bool{}, types: map[string]bool{}}
	known := knownReasons()
	for _, r := range ff.reasons {
		if !slices.Contains(known, r) {
			return f, usagef("unknown --reason %q (known: %s)", r, strings.Join(known, ", "))
		}
		f.reasons[r] = true
	}
	for _, t := range ff.types {
		if !event.ValidTypeName(t) {
			return f, usagef("--type %q is not an event type name (UPPER_SNAKE_CASE, e.g. BET_SETTLED_CONFIRMED)", t)
		}
		f.types[t] = true
	}
	return f, nil
}

func (ff *filterFlags) any() bool { return len(ff.reasons) > 0 || len(ff.types) > 0 }

// scanPage is how many dead letters one XRANGE reads.
const scanPage = 200

// scan calls fn for every dead letter of ref that f matches, in ID order,
// until fn returns false. It takes the entries that were there when it
// started: it reads the dead-letter stream's last ID first and stops there,
// so entries added while it runs (a consumer dead-lettering again what a
// redrive just put back) are not part of this scan, and a redrive cannot
// chase its own output. Entries deleted while it runs are not seen.
func scan(ctx context.Context, rdb redis.UniversalClient, ref streamRef, f dlFilter, fn func(DeadLetter) (bool, error)) error {
	last, err := rdb.XRevRangeN(ctx, ref.DLQ, "+", "-", 1).Result()
	if err != nil {
		return fmt.Errorf("XREVRANGE %s: %w", ref.DLQ, err)
	}
	if len(last) == 0 {
		return nil // no dead-letter stream, or an empty one
	}
	end := last[0].ID
	start := "-"
	for {
		msgs, err := rdb.XRangeN(ctx, ref.DLQ, start, end, scanPage).Result()
		if err != nil {
			return fmt.Errorf("XRANGE %s: %w", ref.DLQ, err)
		}
		for _, m := range msgs {
			dl := newDeadLetter(ref, m)
			if !f.match(dl) {
				continue
			}
			more, err := fn(dl)
			if err != nil || !more {
				return err
			}
		}
		if len(msgs) < scanPage || msgs[len(msgs)-1].ID == end {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// find returns the dead letter with the entry ID id in ref, if any.
func find(ctx context.Context, rdb redis.UniversalClient, ref streamRef, id string) (DeadLetter, bool, error) {
	msgs, err := rdb.XRange(ctx, ref.DLQ, id, id).Result()
	if err != nil {
		return DeadLetter{}, false, fmt.Errorf("XRANGE %s: %w", ref.DLQ, err)
	}
	if len(msgs) == 0 {
		return DeadLetter{}, false, nil
	}
	return newDeadLetter(ref, msgs[0]), true, nil
}

// fieldOrder is the order dlq show prints fields in: the envelope's wire
// order, then other fields by name, then the payload.
var fieldOrder = []string{event.FieldEventID, event.FieldEventType, event.FieldSchemaVersion, event.FieldBrandID,
	event.FieldOccurredAt, event.FieldAggregateID, event.FieldTraceParent, event.FieldTraceState}

func orderedFields(m map[string]string) []string {
	var keys, rest []string
	for _, k := range fieldOrder {
		if _, ok := m[k]; ok {
			keys = append(keys, k)
		}
	}
	for k := range m {
		if !slices.Contains(fieldOrder, k) && k != event.FieldPayload {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	keys = append(keys, rest...)
	if _, ok := m[event.FieldPayload]; ok {
		keys = append(keys, event.FieldPayload)
	}
	return keys
}
