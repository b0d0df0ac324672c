package event

import (
	"strconv"
	"time"
)

// Wire field names of an entry (docs/wire-format.md).
const (
	FieldEventID       = "event_id"
	FieldEventType     = "event_type"
	FieldSchemaVersion = "schema_version"
	FieldBrandID       = "brand_id"
	FieldOccurredAt    = "occurred_at"
	FieldAggregateID   = "aggregate_id"
	FieldPayload       = "payload"
	FieldTraceParent   = "traceparent"
	FieldTraceState    = "tracestate"
)

// DefaultMaxEntryBytes is the size limit of a [Codec] whose MaxEntryBytes is
// zero: 1 MiB of field names and values together.
const DefaultMaxEntryBytes = 1 << 20

const (
	maxEventIDLen     = 128
	maxTypeLen        = 128
	maxAggregateIDLen = 256
	maxTraceStateLen  = 512
)

// Codec converts envelopes to and from Redis stream entry fields. The zero
// value is ready to use with [DefaultMaxEntryBytes]. A Codec is a plain
// value and safe for concurrent use.
type Codec struct {
	// MaxEntryBytes bounds the sum of the lengths of all field names and
	// values of one entry, known or not. Zero or negative means
	// DefaultMaxEntryBytes.
	MaxEntryBytes int
}

func (c Codec) limit() int {
	if c.MaxEntryBytes <= 0 {
		return DefaultMaxEntryBytes
	}
	return c.MaxEntryBytes
}

// Decode decodes with the zero [Codec].
func Decode(fields map[string]any) (Envelope, error) { return Codec{}.Decode(fields) }

// Encode encodes with the zero [Codec].
func Encode(e Envelope) ([]any, error) { return Codec{}.Encode(e) }

// Decode turns the fields of one stream entry, as go-redis returns them in
// [redis.XMessage.Values] (string values; []byte is accepted too), into an
// Envelope.
//
// Every failure is a [*FieldError] wrapping one of [ErrMissingField],
// [ErrBadField], [ErrBadSchemaVersion], [ErrBadBrandID], [ErrBadTimestamp],
// [ErrPayloadNotJSON] or [ErrEntryTooLarge]. The size limit is checked
// before anything is parsed. Unknown extra fields are tolerated. brand_id is
// required from schema version 2; a version 1 entry may lack it (brandguard
// rejects version 1 entries; decoding them lets it count them). An invalid
// traceparent is dropped, not an error.
//
// Beside an error it returns the identity fields that are valid each on
// its own (event_id, event_type, brand_id, aggregate_id, and the
// schema_version when it parsed), so that a rejected entry can be logged
// and counted under its type; that envelope is not valid and must not be
// applied.
func (c Codec) Decode(fields map[string]any) (Envelope, error) {
	var e Envelope
	// One pass over the map sizes the entry and picks out the known
	// fields (cheaper than a lookup per field).
	var f entryFields
	size := 0
	for k, v := range fields {
		size += len(k)
		switch v := v.(type) {
		case string:
			size += len(v)
		case []byte:
			size += len(v)
		}
		if i := knownField(k); i >= 0 {
			f.values[i], f.present = v, f.present|1<<i
		}
	}
	if size > c.limit() {
		return f.identity(0), &FieldError{Err: ErrEntryTooLarge, Detail: strconv.Itoa(size) + " bytes, limit " + strconv.Itoa(c.limit())}
	}

	sv, err := f.required(fSchemaVersion)
	if err != nil {
		return f.identity(0), err
	}
	if e.SchemaVersion, err = parseSchemaVersion(sv); err != nil {
		return f.identity(0), err
	}
	fail := func(err *FieldError) (Envelope, error) {
		err.SchemaVersion = e.SchemaVersion
		return f.identity(e.SchemaVersion), err
	}

	if e.EventID, err = f.required(fEventID); err != nil {
		return fail(err)
	}
	if err := checkEventID(e.EventID); err != nil {
		return fail(err)
	}
	typ, err := f.required(fEventType)
	if err != nil {
		return fail(err)
	}
	if err := checkType(typ); err != nil {
		return fail(err)
	}
	e.EventType = Type(typ)

	brand, present, err := f.optional(fBrandID)
	if err != nil {
		return fail(err)
	}
	switch {
	case present:
		b, perr := parseBrand(brand)
		if perr != nil {
			return fail(perr)
		}
		e.BrandID = b
	case e.SchemaVersion >= 2:
		return fail(fieldErr(FieldBrandID, ErrMissingField, "required from schema_version 2"))
	}

	ts, err := f.required(fOccurredAt)
	if err != nil {
		return fail(err)
	}
	t, perr := parseTimestamp(ts)
	if perr != nil {
		return fail(fieldErr(FieldOccurredAt, ErrBadTimestamp, "%s is not RFC 3339", quoteShort(ts)))
	}
	e.OccurredAt = t.UTC()
	if y := e.OccurredAt.Year(); y < 1 || y > 9999 {
		// As Envelope.Validate: what is decoded can be encoded again.
		return fail(fieldErr(FieldOccurredAt, ErrBadTimestamp, "%s is in year %d in UTC, outside 1 to 9999", quoteShort(ts), y))
	}
	if e.OccurredAt.IsZero() {
		// Validate refuses Go's zero time (it means "not set"), so decoding
		// does too.
		return fail(fieldErr(FieldOccurredAt, ErrBadTimestamp, "%s is the zero time", quoteShort(ts)))
	}

	if e.AggregateID, err = f.required(fAggregateID); err != nil {
		return fail(err)
	}
	if err := checkAggregateID(e.AggregateID); err != nil {
		return fail(err)
	}

	payload, err := f.requiredBytes(fPayload)
	if err != nil {
		return fail(err)
	}
	if !validJSON(payload) {
		return fail(fieldErr(FieldPayload, ErrPayloadNotJSON, "%d bytes", len(payload)))
	}
	e.Payload = payload

	// Trace context is advisory: the W3C spec asks receivers to ignore an
	// invalid traceparent rather than fail, so it never rejects an event.
	if tp, ok, _ := f.optional(fTraceParent); ok && validTraceParent(tp) {
		e.TraceParent = tp
		if ts, ok, _ := f.optional(fTraceState); ok && validTraceState(ts) {
			e.TraceState = ts
		}
	}
	return e, nil
}

// Encode validates e with [Envelope.Validate] and returns its fields as
// alternating names and values in a fixed order, ready for
// redis.XAddArgs.Values. The optional trace fields are written only when
// set. An entry over the size limit returns [ErrEntryTooLarge].
func (c Codec) Encode(e Envelope) ([]any, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	n := 14
	if e.TraceParent != "" {
		n += 2
	}
	if e.TraceState != "" {
		n += 2
	}
	out := make([]any, 0, n)
	out = append(out,
		FieldEventID, e.EventID,
		FieldEventType, string(e.EventType),
		FieldSchemaVersion, strconv.Itoa(e.SchemaVersion),
		FieldBrandID, e.BrandID.String(),
		FieldOccurredAt, e.OccurredAt.UTC().Format(time.RFC3339Nano),
		FieldAggregateID, e.AggregateID,
		FieldPayload, string(e.Payload),
	)
	if e.TraceParent != "" {
		out = append(out, FieldTraceParent, e.TraceParent)
	}
	if e.TraceState != "" {
		out = append(out, FieldTraceState, e.TraceState)
	}
	size := 0
	for _, v := range out {
		size += len(v.(string))
	}
	if size > c.limit() {
		return nil, &FieldError{Err: ErrEntryTooLarge, Detail: strconv.Itoa(size) + " bytes, limit " + strconv.Itoa(c.limit())}
	}
	return out, nil
}

// Indexes of the known fields in entryFields.
const (
	fEventID = iota
	fEventType
	fSchemaVersion
	fBrandID
	fOccurredAt
	fAggregateID
	fPayload
	fTraceParent
	fTraceState
	numKnownFields
)

var knownFieldNames = [numKnownFields]string{FieldEventID, FieldEventType, FieldSchemaVersion, FieldBrandID,
	FieldOccurredAt, FieldAggregateID, FieldPayload, FieldTraceParent, FieldTraceState}

// knownField returns the index of a known field name, or -1.
func knownField(name string) int {
	switch name {
	case FieldEventID:
		return fEventID
	case FieldEventType:
		return fEventType
	case FieldSchemaVersion:
		return fSchemaVersion
	case FieldBrandID:
		return fBrandID
	case FieldOccurredAt:
		return fOccurredAt
	case FieldAggregateID:
		return fAggregateID
	case FieldPayload:
		return fPayload
	case FieldTraceParent:
		return fTraceParent
	case FieldTraceState:
		return fTraceState
	}
	return -1
}

// identity returns an envelope with the entry's identity fields that are
// valid each on its own — event_id, event_type, brand_id, aggregate_id —
// and schemaVersion: what Decode returns beside an error, so a rejected
// entry can still be logged and counted under its type. It is not a valid
// envelope.
func (f *entryFields) identity(schemaVersion int) Envelope {
	e := Envelope{SchemaVersion: schemaVersion}
	if id, _, err := f.optional(fEventID); err == nil && checkEventID(id) == nil {
		e.EventID = id
	}
	if typ, _, err := f.optional(fEventType); err == nil && checkType(typ) == nil {
		e.EventType = Type(typ)
	}
	if b, ok, err := f.optional(fBrandID); err == nil && ok {
		if brand, perr := parseBrand(b); perr == nil {
			e.BrandID = brand
		}
	}
	if agg, _, err := f.optional(fAggregateID); err == nil && checkAggregateID(agg) == nil {
		e.AggregateID = agg
	}
	return e
}

// entryFields holds the known fields of an entry, by index.
type entryFields struct {
	values  [numKnownFields]any
	present uint16 // bit i: field i is in the entry (its value may be nil)
}

func (f *entryFields) optional(i int) (string, bool, *FieldError) {
	if f.present&(1<<i) == 0 {
		return "", false, nil
	}
	switch v := f.values[i].(type) {
	case string:
		return v, true, nil
	case []byte:
		return string(v), true, nil
	default:
		return "", true, fieldErr(knownFieldNames[i], ErrBadField, "value of type %T, want a string", v)
	}
}

func (f *entryFields) required(i int) (string, *FieldError) {
	s, ok, err := f.optional(i)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fieldErr(knownFieldNames[i], ErrMissingField, "")
	}
	return s, nil
}

func (f *entryFields) requiredBytes(i int) ([]byte, *FieldError) {
	if f.present&(1<<i) == 0 {
		return nil, fieldErr(knownFieldNames[i], ErrMissingField, "")
	}
	switch v := f.values[i].(type) {
	case string:
		return []byte(v), nil
	case []byte:
		return append([]byte(nil), v...), nil
	default:
		return nil, fieldErr(knownFieldNames[i], ErrBadField, "value of type %T, want a string", v)
	}
}
