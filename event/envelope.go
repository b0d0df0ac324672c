package event

import (
	"encoding/json"
	"strconv"
	"time"
)

// Schema versions of the envelope (ADR-009).
const (
	// MinSchemaVersion is the oldest schema_version the decoder reads:
	// version 1 entries predate brand_id and decode so that brandguard can
	// count and reject them.
	MinSchemaVersion = 1
	// MaxSchemaVersion is the largest schema_version the decoder reads.
	// Every version from 2 on is read by the version 2 rules (the event
	// catalog: "schema_version >= 2: read brand_id from envelope"): a
	// later version may add fields, and unknown fields are tolerated. The
	// bound only keeps the number an int32.
	MaxSchemaVersion = 1<<31 - 1
	// CurrentSchemaVersion is the only version producers may emit.
	CurrentSchemaVersion = 2
)

// Type is an event type name such as BET_SETTLED_CONFIRMED: an upper-case
// letter followed by upper-case letters, digits and underscores, at most
// 128 bytes.
type Type string

// BrandID identifies a brand of the platform. Valid brand IDs are positive;
// the zero value means "no brand".
type BrandID int64

// String returns the decimal text form used on the wire.
func (b BrandID) String() string { return strconv.FormatInt(int64(b), 10) }

// Valid reports whether b is a positive brand ID.
func (b BrandID) Valid() bool { return b > 0 }

// ParseBrandID parses the wire form of a brand ID: a positive 64-bit integer
// written as plain decimal digits, with no sign, no leading zero, no spaces.
// Anything else returns an error wrapping [ErrBadBrandID].
func ParseBrandID(s string) (BrandID, error) {
	b, err := parseBrand(s)
	if err != nil {
		return 0, err
	}
	return b, nil
}

func parseBrand(s string) (BrandID, *FieldError) {
	if s == "" {
		return 0, fieldErr(FieldBrandID, ErrBadBrandID, "empty")
	}
	if !isCanonicalDecimal(s) {
		return 0, fieldErr(FieldBrandID, ErrBadBrandID, "%s is not a positive decimal integer", quoteShort(s))
	}
	var n int64
	if len(s) <= 18 {
		// At most 18 digits cannot overflow.
		for i := 0; i < len(s); i++ {
			n = n*10 + int64(s[i]-'0')
		}
	} else if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		n = v
	} else {
		return 0, fieldErr(FieldBrandID, ErrBadBrandID, "%s overflows a 64-bit integer", quoteShort(s))
	}
	if n <= 0 {
		return 0, fieldErr(FieldBrandID, ErrBadBrandID, "%s is not positive", quoteShort(s))
	}
	return BrandID(n), nil
}

// Envelope is one domain event as it travels on a stream: the shared
// DomainEvent envelope of the platform with its payload.
//
// The zero value is not a valid event; [Envelope.Validate] says what is
// missing.
type Envelope struct {
	// EventID identifies the event across retries and relays; consumers
	// deduplicate on it. 1 to 128 visible ASCII characters.
	EventID string
	// EventType names the event, e.g. BET_SETTLED_CONFIRMED.
	EventType Type
	// SchemaVersion of the envelope; producers emit CurrentSchemaVersion.
	SchemaVersion int
	// BrandID is the brand the event belongs to. Required from schema
	// version 2; zero for a version 1 entry that carried none.
	BrandID BrandID
	// OccurredAt is when the business fact happened (UTC after decoding).
	OccurredAt time.Time
	// AggregateID is the ID of the business entity the event is about.
	AggregateID string
	// Payload is the event body: one JSON value.
	Payload json.RawMessage
	// TraceParent is the optional W3C traceparent header value. The
	// decoder drops an invalid one, as the W3C Trace Context spec asks.
	TraceParent string
	// TraceState is the optional W3C tracestate value, kept only with a
	// valid TraceParent.
	TraceState string
}

// Validate reports whether e may be published: it returns nil or a
// [*FieldError] for the first field a producer got wrong. It is stricter
// than decoding: only [CurrentSchemaVersion] is accepted, a brand is always
// required and an invalid trace context is refused rather than dropped.
func (e *Envelope) Validate() error {
	if e.SchemaVersion != CurrentSchemaVersion {
		return fieldErr(FieldSchemaVersion, ErrBadSchemaVersion,
			"producers emit only schema_version %d, got %d", CurrentSchemaVersion, e.SchemaVersion)
	}
	if err := checkEventID(e.EventID); err != nil {
		return err
	}
	if err := checkType(string(e.EventType)); err != nil {
		return err
	}
	if !e.BrandID.Valid() {
		return fieldErr(FieldBrandID, ErrBadBrandID, "%d is not positive", int64(e.BrandID))
	}
	if e.OccurredAt.IsZero() {
		return fieldErr(FieldOccurredAt, ErrBadTimestamp, "zero time")
	}
	if y := e.OccurredAt.UTC().Year(); y < 1 || y > 9999 {
		return fieldErr(FieldOccurredAt, ErrBadTimestamp, "year %d is outside RFC 3339", y)
	}
	if err := checkAggregateID(e.AggregateID); err != nil {
		return err
	}
	if !validJSON(e.Payload) {
		return fieldErr(FieldPayload, ErrPayloadNotJSON, "%d bytes", len(e.Payload))
	}
	if e.TraceParent != "" && !validTraceParent(e.TraceParent) {
		return fieldErr(FieldTraceParent, ErrBadField, "not a W3C traceparent")
	}
	if e.TraceState != "" {
		if e.TraceParent == "" {
			return fieldErr(FieldTraceState, ErrBadField, "tracestate without traceparent")
		}
		if !validTraceState(e.TraceState) {
			return fieldErr(FieldTraceState, ErrBadField, "not a W3C tracestate")
		}
	}
	return nil
}
