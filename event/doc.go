// Package event defines the event envelope that travels on headway's Redis
// streams, its codec to and from stream entry fields, and the Catalog type
// that describes streams and their event types (package platform has the
// platform's). It does no I/O.
//
// # Envelope and wire format
//
// An [Envelope] is one domain event: event_id, event_type, schema_version,
// brand_id, occurred_at, aggregate_id, a JSON payload and an optional W3C
// trace context. On a stream each attribute is one entry field, named by
// the Field constants ([FieldEventID], ...); docs/wire-format.md describes
// every field.
//
// [Codec.Encode] validates an envelope and returns the field list for XADD;
// producers emit only [CurrentSchemaVersion] with a positive [BrandID].
// [Codec.Decode] reads the fields that go-redis returns and fails with a
// [*FieldError] that wraps a sentinel a caller can branch on:
//
//	env, err := event.Decode(msg.Values)
//	switch {
//	case errors.Is(err, event.ErrBadBrandID):
//		// dead-letter as unparseable brand
//	case err != nil:
//		// dead-letter as malformed
//	}
//
// Decoding checks the entry's size first ([Codec.MaxEntryBytes], default
// [DefaultMaxEntryBytes]) and tolerates unknown extra fields; every
// schema_version from 2 on is read by the version 2 rules. Policy — what
// to do with a version 1 entry or a brand mismatch — belongs to package
// brandguard, not here.
//
// # Catalog
//
// A [Catalog] lists streams, their producer and consumers, and each event
// type with its [Status]; package platform has the platform's.
// docs/event-catalog.md and docs/event-catalog.json are generated from it by
// go generate, and a test fails when they are stale. A consumer runs
// [Catalog.CheckDispatch] at start-up to refuse handlers for types that are
// reserved, retired or unknown on its stream; the outbox writer runs
// [Catalog.CheckEmit] before writing.
//
// Stream keys are "events:{name}" ([StreamKey]) and dead-letter keys
// "events:{name}:dlq" ([DeadLetterKey]): the braces are a Redis Cluster hash
// tag, so both keys of a stream live in one slot.
package event
