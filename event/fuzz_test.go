package event_test

import (
	"errors"
	"testing"

	"github.com/headwaylabs/headway/event"
)

// fuzzFields builds an entry from fuzz inputs; bit i of omit drops field i.
func fuzzFields(omit uint16, id, typ, ver, brand, ts, agg, payload, tp string) map[string]any {
	names := []string{"event_id", "event_type", "schema_version", "brand_id", "occurred_at", "aggregate_id", "payload", "traceparent"}
	values := []string{id, typ, ver, brand, ts, agg, payload, tp}
	f := make(map[string]any, len(names))
	for i, n := range names {
		if omit&(1<<i) == 0 {
			f[n] = values[i]
		}
	}
	return f
}

func addSeeds(f *testing.F) {
	f.Add(uint16(0), "evt-1", "BET_SETTLED_CONFIRMED", "2", "42", "2026-05-15T10:20:30Z", "bet-1", `{"a":1}`, validTraceParent)
	f.Add(uint16(1<<3), "evt-2", "BET_SETTLED_CONFIRMED", "1", "", "2026-05-15T10:20:30Z", "bet-1", `{}`, "")
	f.Add(uint16(0), "evt-3", "BRAND_AWARE_PUBLISHING_BEGINS", "2", "1", "2026-05-15T10:20:30.5+09:00", "x", `null`, "")
	f.Add(uint16(0), "evt-4", "DEPOSIT_APPROVED", "2.5", "-1", "yesterday", "", `{`, "00-xyz")
	f.Add(uint16(0), "evt-5", "X", "99", "9223372036854775808", "2026-05-15T10:20:30Z", "a", "\xff", "")
	f.Add(uint16(0xffff), "", "", "", "", "", "", "", "")
	f.Add(uint16(1<<2), "evt-6", "A", "0", "007", "2026-02-30T00:00:00Z", "\x00", `[1,2,3]`, "")
}

// FuzzDecode: Decode never panics, fails only with a *FieldError wrapping a
// known sentinel, and everything it accepts re-encodes (for version 2) to
// fields that decode to the same envelope.
func FuzzDecode(f *testing.F) {
	addSeeds(f)
	sentinels := []error{event.ErrMissingField, event.ErrBadField, event.ErrBadSchemaVersion, event.ErrBadBrandID,
		event.ErrBadTimestamp, event.ErrPayloadNotJSON, event.ErrEntryTooLarge}
	f.Fuzz(func(t *testing.T, omit uint16, id, typ, ver, brand, ts, agg, payload, tp string) {
		env, err := event.Decode(fuzzFields(omit, id, typ, ver, brand, ts, agg, payload, tp))
		if err != nil {
			var fe *event.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not *event.FieldError: %v", err, err)
			}
			known := false
			for _, s := range sentinels {
				known = known || errors.Is(err, s)
			}
			if !known || err.Error() == "" {
				t.Fatalf("error wraps no known sentinel: %v", err)
			}
			return
		}
		if env.SchemaVersion < event.MinSchemaVersion || env.SchemaVersion > event.MaxSchemaVersion {
			t.Fatalf("accepted schema_version %d", env.SchemaVersion)
		}
		if env.SchemaVersion >= 2 && !env.BrandID.Valid() {
			t.Fatalf("accepted version %d without a valid brand: %d", env.SchemaVersion, env.BrandID)
		}
		if env.SchemaVersion != event.CurrentSchemaVersion {
			return
		}
		fields, err := event.Encode(env)
		if err != nil {
			t.Fatalf("a decoded version 2 envelope does not re-encode: %v (%+v)", err, env)
		}
		m := map[string]any{}
		for i := 0; i < len(fields); i += 2 {
			m[fields[i].(string)] = fields[i+1]
		}
		again, err := event.Decode(m)
		if err != nil || !equalEnvelope(env, again) {
			t.Fatalf("re-decode: %v\n first %+v\nsecond %+v", err, env, again)
		}
	})
}
