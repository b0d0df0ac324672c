package event_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

const validTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// validFields returns the fields of a valid schema_version 2 entry.
func validFields() map[string]any {
	return map[string]any{
		"event_id":       "evt-0001",
		"event_type":     "BET_SETTLED_CONFIRMED",
		"schema_version": "2",
		"brand_id":       "42",
		"occurred_at":    "2026-05-15T10:20:30.123456789Z",
		"aggregate_id":   "bet-77",
		"payload":        `{"bet_id":"bet-77","amount":"12.50"}`,
	}
}

func with(f map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		f[kv[i].(string)] = kv[i+1]
	}
	return f
}

func without(f map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		delete(f, k)
	}
	return f
}

func TestDecodeValid(t *testing.T) {
	env, err := event.Decode(with(validFields(), "traceparent", validTraceParent, "tracestate", "vendor=1", "x-extra", "tolerated"))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := event.Envelope{
		EventID: "evt-0001", EventType: platform.BetSettledConfirmed, SchemaVersion: 2, BrandID: 42,
		OccurredAt:  time.Date(2026, 5, 15, 10, 20, 30, 123456789, time.UTC),
		AggregateID: "bet-77", Payload: json.RawMessage(`{"bet_id":"bet-77","amount":"12.50"}`),
		TraceParent: validTraceParent, TraceState: "vendor=1",
	}
	if !equalEnvelope(env, want) {
		t.Fatalf("Decode = %+v\nwant %+v", env, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	huge := strings.Repeat("x", event.DefaultMaxEntryBytes)
	tests := []struct {
		name      string
		fields    map[string]any
		sentinel  error
		field     string
		schemaVer int
	}{
		{"nil entry (trimmed while pending)", nil, event.ErrMissingField, "schema_version", 0},
		{"missing event_id", without(validFields(), "event_id"), event.ErrMissingField, "event_id", 2},
		{"missing event_type", without(validFields(), "event_type"), event.ErrMissingField, "event_type", 2},
		{"missing schema_version", without(validFields(), "schema_version"), event.ErrMissingField, "schema_version", 0},
		{"missing brand_id in v2", without(validFields(), "brand_id"), event.ErrMissingField, "brand_id", 2},
		{"missing occurred_at", without(validFields(), "occurred_at"), event.ErrMissingField, "occurred_at", 2},
		{"missing aggregate_id", without(validFields(), "aggregate_id"), event.ErrMissingField, "aggregate_id", 2},
		{"missing payload", without(validFields(), "payload"), event.ErrMissingField, "payload", 2},
		{"schema_version 0", with(validFields(), "schema_version", "0"), event.ErrBadSchemaVersion, "schema_version", 0},
		{"schema_version -1", with(validFields(), "schema_version", "-1"), event.ErrBadSchemaVersion, "schema_version", 0},
		{"schema_version 2.5", with(validFields(), "schema_version", "2.5"), event.ErrBadSchemaVersion, "schema_version", 0},
		{"schema_version 2147483648", with(validFields(), "schema_version", "2147483648"), event.ErrBadSchemaVersion, "schema_version", 0},
		{"schema_version huge", with(validFields(), "schema_version", "99999999999999999999999"), event.ErrBadSchemaVersion, "schema_version", 0},
		{"schema_version with plus", with(validFields(), "schema_version", "+2"), event.ErrBadSchemaVersion, "schema_version", 0},
		{"schema_version empty", with(validFields(), "schema_version", ""), event.ErrBadSchemaVersion, "schema_version", 0},
		{"brand_id 0", with(validFields(), "brand_id", "0"), event.ErrBadBrandID, "brand_id", 2},
		{"brand_id -1", with(validFields(), "brand_id", "-1"), event.ErrBadBrandID, "brand_id", 2},
		{"brand_id text", with(validFields(), "brand_id", "brand-a"), event.ErrBadBrandID, "brand_id", 2},
		{"brand_id overflow", with(validFields(), "brand_id", "9223372036854775808"), event.ErrBadBrandID, "brand_id", 2},
		{"brand_id empty", with(validFields(), "brand_id", ""), event.ErrBadBrandID, "brand_id", 2},
		{"brand_id leading zero", with(validFields(), "brand_id", "042"), event.ErrBadBrandID, "brand_id", 2},
		{"brand_id spaces", with(validFields(), "brand_id", " 42"), event.ErrBadBrandID, "brand_id", 2},
		{"brand_id float", with(validFields(), "brand_id", "4.2"), event.ErrBadBrandID, "brand_id", 2},
		{"brand_id bad in v1", with(validFields(), "schema_version", "1", "brand_id", "x"), event.ErrBadBrandID, "brand_id", 1},
		{"occurred_at not RFC 3339", with(validFields(), "occurred_at", "2026-05-15 10:20:30"), event.ErrBadTimestamp, "occurred_at", 2},
		{"occurred_at unix seconds", with(validFields(), "occurred_at", "1747304430"), event.ErrBadTimestamp, "occurred_at", 2},
		{"occurred_at month 13", with(validFields(), "occurred_at", "2026-13-15T10:20:30Z"), event.ErrBadTimestamp, "occurred_at", 2},
		{"occurred_at year 0", with(validFields(), "occurred_at", "0000-01-01T00:00:00Z"), event.ErrBadTimestamp, "occurred_at", 2},
		{"occurred_at year 10000 in UTC", with(validFields(), "occurred_at", "9999-12-31T23:00:00-05:00"), event.ErrBadTimestamp, "occurred_at", 2},
		{"payload not JSON", with(validFields(), "payload", "not json"), event.ErrPayloadNotJSON, "payload", 2},
		{"payload truncated", with(validFields(), "payload", `{"bet_id":"b`), event.ErrPayloadNotJSON, "payload", 2},
		{"payload empty", with(validFields(), "payload", ""), event.ErrPayloadNotJSON, "payload", 2},
		{"payload not UTF-8", with(validFields(), "payload", "{\"a\":\"\xff\"}"), event.ErrPayloadNotJSON, "payload", 2},
		{"event_id empty", with(validFields(), "event_id", ""), event.ErrBadField, "event_id", 2},
		{"event_id with space", with(validFields(), "event_id", "a b"), event.ErrBadField, "event_id", 2},
		{"event_id too long", with(validFields(), "event_id", strings.Repeat("a", 129)), event.ErrBadField, "event_id", 2},
		{"event_id not UTF-8", with(validFields(), "event_id", "ev\xff"), event.ErrBadField, "event_id", 2},
		{"event_type lower case", with(validFields(), "event_type", "bet_settled"), event.ErrBadField, "event_type", 2},
		{"event_type empty", with(validFields(), "event_type", ""), event.ErrBadField, "event_type", 2},
		{"aggregate_id empty", with(validFields(), "aggregate_id", ""), event.ErrBadField, "aggregate_id", 2},
		{"aggregate_id not UTF-8", with(validFields(), "aggregate_id", "bet\xfe"), event.ErrBadField, "aggregate_id", 2},
		{"aggregate_id control char", with(validFields(), "aggregate_id", "bet\n1"), event.ErrBadField, "aggregate_id", 2},
		{"field of wrong type", with(validFields(), "event_id", 12), event.ErrBadField, "event_id", 2},
		{"field with a nil value", with(validFields(), "event_id", nil), event.ErrBadField, "event_id", 2},
		{"payload with a nil value", with(validFields(), "payload", nil), event.ErrBadField, "payload", 2},
		{"entry too large", with(validFields(), "payload", `"`+huge+`"`), event.ErrEntryTooLarge, "", 0},
		{"unknown field makes it too large", with(validFields(), "junk", huge), event.ErrEntryTooLarge, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, err := event.Decode(tt.fields)
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("Decode error = %v, want %v", err, tt.sentinel)
			}
			var fe *event.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Decode error %T is not *event.FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("FieldError.Field = %q, want %q", fe.Field, tt.field)
			}
			if fe.SchemaVersion != tt.schemaVer {
				t.Errorf("FieldError.SchemaVersion = %d, want %d", fe.SchemaVersion, tt.schemaVer)
			}
			// Beside an error only the identity fields come back: never
			// something that could pass for a valid envelope.
			if env.Payload != nil || !env.OccurredAt.IsZero() || env.Validate() == nil {
				t.Errorf("Decode returned more than the identity fields with its error: %+v", env)
			}
		})
	}
}

func TestDecodeLegacyV1WithoutBrand(t *testing.T) {
	env, err := event.Decode(without(with(validFields(), "schema_version", "1"), "brand_id"))
	if err != nil {
		t.Fatalf("a version 1 entry without brand_id must decode (brandguard judges it): %v", err)
	}
	if env.SchemaVersion != 1 || env.BrandID != 0 {
		t.Fatalf("got schema %d brand %d, want 1 and 0", env.SchemaVersion, env.BrandID)
	}
}

// TestDecodeLaterVersionsByVersion2Rules: the event catalog says
// "schema_version >= 2: read brand_id from envelope"; a later version is
// read by the version 2 rules, its extra fields tolerated, and a missing
// brand is still refused.
func TestDecodeLaterVersionsByVersion2Rules(t *testing.T) {
	for _, v := range []string{"3", "99"} {
		env, err := event.Decode(with(validFields(), "schema_version", v, "x_added_in_v3", "tolerated"))
		if err != nil {
			t.Fatalf("schema_version %s: %v", v, err)
		}
		if strconv.Itoa(env.SchemaVersion) != v || env.BrandID != 42 {
			t.Fatalf("schema_version %s: got version %d brand %d", v, env.SchemaVersion, env.BrandID)
		}
		_, err = event.Decode(without(with(validFields(), "schema_version", v), "brand_id"))
		if !errors.Is(err, event.ErrMissingField) {
			t.Fatalf("schema_version %s without brand_id: %v, want ErrMissingField", v, err)
		}
	}
}

func TestDecodeAcceptsBytesAndOffsets(t *testing.T) {
	f := validFields()
	f["payload"] = []byte(`[1,2]`)
	f["occurred_at"] = "2026-05-15T12:20:30+02:00"
	env, err := event.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if string(env.Payload) != "[1,2]" {
		t.Errorf("payload = %s", env.Payload)
	}
	if want := time.Date(2026, 5, 15, 10, 20, 30, 0, time.UTC); !env.OccurredAt.Equal(want) || env.OccurredAt.Location() != time.UTC {
		t.Errorf("occurred_at = %v, want %v in UTC", env.OccurredAt, want)
	}
}

func TestDecodeDropsInvalidTraceContext(t *testing.T) {
	for _, tp := range []string{
		"garbage",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper-case hex
		validTraceParent + "-extra",                               // version 00 has no extra part
	} {
		env, err := event.Decode(with(validFields(), "traceparent", tp, "tracestate", "a=b"))
		if err != nil {
			t.Fatalf("traceparent %q: an invalid trace context must not reject the event: %v", tp, err)
		}
		if env.TraceParent != "" || env.TraceState != "" {
			t.Errorf("traceparent %q kept as %q/%q, want dropped", tp, env.TraceParent, env.TraceState)
		}
	}
	env, err := event.Decode(with(validFields(), "traceparent", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"))
	if err != nil || env.TraceParent == "" {
		t.Errorf("a future traceparent version with extra fields must be kept: %v %q", err, env.TraceParent)
	}
}

func TestDecodeSizeLimitIsConfigurable(t *testing.T) {
	c := event.Codec{MaxEntryBytes: 100}
	if _, err := c.Decode(validFields()); !errors.Is(err, event.ErrEntryTooLarge) {
		t.Fatalf("100-byte limit: err = %v, want ErrEntryTooLarge", err)
	}
	c.MaxEntryBytes = 1000
	if _, err := c.Decode(validFields()); err != nil {
		t.Fatalf("1000-byte limit: %v", err)
	}
}

func validEnvelope() event.Envelope {
	return event.Envelope{
		EventID: "evt-1", EventType: platform.DepositApproved, SchemaVersion: event.CurrentSchemaVersion, BrandID: 7,
		OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600)), AggregateID: "deposit-9",
		Payload: json.RawMessage(`{"amount":"100.00"}`), TraceParent: validTraceParent, TraceState: "k=v",
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	in := validEnvelope()
	fields, err := event.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(fields)%2 != 0 || fields[0] != "event_id" {
		t.Fatalf("fields are not name/value pairs in order: %v", fields)
	}
	m := map[string]any{}
	for i := 0; i < len(fields); i += 2 {
		m[fields[i].(string)] = fields[i+1]
	}
	if m["brand_id"] != "7" || m["schema_version"] != "2" || m["occurred_at"] != "2026-01-02T02:04:05.000000006Z" {
		t.Errorf("wire values = %v", m)
	}
	out, err := event.Decode(m)
	if err != nil {
		t.Fatal(err)
	}
	if !equalEnvelope(in, out) {
		t.Fatalf("round trip changed the envelope:\n in %+v\nout %+v", in, out)
	}
}

func TestEncodeRefusesWhatDecodeRejects(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(*event.Envelope)
		sentinel error
	}{
		{"schema_version 1", func(e *event.Envelope) { e.SchemaVersion = 1 }, event.ErrBadSchemaVersion},
		{"schema_version 3", func(e *event.Envelope) { e.SchemaVersion = 3 }, event.ErrBadSchemaVersion},
		{"no brand", func(e *event.Envelope) { e.BrandID = 0 }, event.ErrBadBrandID},
		{"negative brand", func(e *event.Envelope) { e.BrandID = -3 }, event.ErrBadBrandID},
		{"no event id", func(e *event.Envelope) { e.EventID = "" }, event.ErrBadField},
		{"bad event type", func(e *event.Envelope) { e.EventType = "deposit" }, event.ErrBadField},
		{"zero time", func(e *event.Envelope) { e.OccurredAt = time.Time{} }, event.ErrBadTimestamp},
		{"year 10000", func(e *event.Envelope) { e.OccurredAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, event.ErrBadTimestamp},
		{"no aggregate", func(e *event.Envelope) { e.AggregateID = "" }, event.ErrBadField},
		{"payload not JSON", func(e *event.Envelope) { e.Payload = json.RawMessage("{") }, event.ErrPayloadNotJSON},
		{"no payload", func(e *event.Envelope) { e.Payload = nil }, event.ErrPayloadNotJSON},
		{"bad traceparent", func(e *event.Envelope) { e.TraceParent = "nope" }, event.ErrBadField},
		{"tracestate alone", func(e *event.Envelope) { e.TraceParent = "" }, event.ErrBadField},
		{"too large", func(e *event.Envelope) {
			e.Payload = json.RawMessage(`"` + strings.Repeat("x", event.DefaultMaxEntryBytes) + `"`)
		}, event.ErrEntryTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validEnvelope()
			tt.mutate(&e)
			fields, err := event.Encode(e)
			if !errors.Is(err, tt.sentinel) || fields != nil {
				t.Fatalf("Encode = %v, %v; want nil, %v", fields, err, tt.sentinel)
			}
		})
	}
}

func TestParseBrandID(t *testing.T) {
	if b, err := event.ParseBrandID("9223372036854775807"); err != nil || b != 9223372036854775807 {
		t.Errorf("max int64: %d, %v", b, err)
	}
	if b, err := event.ParseBrandID("1"); err != nil || b != 1 || b.String() != "1" {
		t.Errorf("1: %d, %v", b, err)
	}
	for _, s := range []string{"", "0", "-1", "1e3", "0x10", "١٢", "9223372036854775808"} {
		if _, err := event.ParseBrandID(s); !errors.Is(err, event.ErrBadBrandID) {
			t.Errorf("ParseBrandID(%q) error = %v, want ErrBadBrandID", s, err)
		}
	}
}

func equalEnvelope(a, b event.Envelope) bool {
	return a.EventID == b.EventID && a.EventType == b.EventType && a.SchemaVersion == b.SchemaVersion &&
		a.BrandID == b.BrandID && a.OccurredAt.Equal(b.OccurredAt) && a.AggregateID == b.AggregateID &&
		string(a.Payload) == string(b.Payload) && a.TraceParent == b.TraceParent && a.TraceState == b.TraceState
}

// TestDecodeErrorKeepsTheIdentityFields: a rejected entry keeps the fields
// that are valid on their own, so it is logged and counted under its
// event_type, not as "other" with an empty event_id.
func TestDecodeErrorKeepsTheIdentityFields(t *testing.T) {
	env, err := event.Decode(without(validFields(), "brand_id"))
	if !errors.Is(err, event.ErrMissingField) {
		t.Fatalf("missing brand_id: %v", err)
	}
	if env.EventID != "evt-0001" || env.EventType != platform.BetSettledConfirmed || env.SchemaVersion != 2 || env.AggregateID == "" {
		t.Fatalf("identity of a missing-brand entry: %+v", env)
	}
	env, _ = event.Decode(with(validFields(), "event_id", strings.Repeat("x", 300), "brand_id", "brand-three"))
	if env.EventID != "" || env.EventType != platform.BetSettledConfirmed || env.BrandID != 0 {
		t.Fatalf("identity keeps only valid fields: %+v", env)
	}
	env, _ = event.Decode(with(validFields(), "payload", "{not json"))
	if env.EventID != "evt-0001" || env.BrandID != 42 || env.Payload != nil {
		t.Fatalf("identity of a malformed-payload entry: %+v", env)
	}
}
