package brandguard_test

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/platform"
)

// FuzzDecodeVerdict: decode + verdict never panics, and every input ends in
// accept (no error), ignore, or reject with a known reason and an error that
// wraps a brandguard sentinel.
func FuzzDecodeVerdict(f *testing.F) {
	f.Add("evt-1", "BET_SETTLED_CONFIRMED", "2", "7", "2026-05-15T10:20:30Z", "bet-1", `{"a":1}`, uint8(0))
	f.Add("evt-2", "BET_SETTLED_CONFIRMED", "1", "", "2026-05-15T10:20:30Z", "bet-1", `{}`, uint8(1<<3))
	f.Add("evt-3", "BRAND_AWARE_PUBLISHING_BEGINS", "2", "1", "2026-05-15T10:20:30Z", "x", `null`, uint8(0))
	f.Add("evt-4", "DEPOSIT_APPROVED", "2", "abc", "2026-05-15T10:20:30Z", "d", `{`, uint8(0))
	f.Add("", "", "", "", "", "", "", uint8(0xff))
	f.Add("evt-5", "X", "3", "-4", "x", "a", "\xff", uint8(0))

	g, err := brandguard.New(brandguard.Config{Catalog: platform.Catalog(), Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	scope := g.Scope("events:{wallet}", "fuzz")
	known := map[brandguard.Reason]bool{}
	for _, r := range brandguard.Reasons {
		known[r] = true
	}
	sentinels := []error{brandguard.ErrLegacySchema, brandguard.ErrMissingBrand, brandguard.ErrUnparseableBrand,
		brandguard.ErrUnsupportedSchema, brandguard.ErrTooLarge, brandguard.ErrMalformed}

	f.Fuzz(func(t *testing.T, id, typ, ver, brand, ts, agg, payload string, omit uint8) {
		names := []string{"event_id", "event_type", "schema_version", "brand_id", "occurred_at", "aggregate_id", "payload"}
		values := []string{id, typ, ver, brand, ts, agg, payload}
		fields := map[string]any{}
		for i, n := range names {
			if omit&(1<<i) == 0 {
				fields[n] = values[i]
			}
		}
		env, v := scope.Decode(fields)
		switch v.Action {
		case brandguard.ActionAccept:
			if v.Err != nil || v.Reason != brandguard.ReasonNone || !env.BrandID.Valid() || env.SchemaVersion < 2 {
				t.Fatalf("accepted %+v with %+v", env, v)
			}
		case brandguard.ActionIgnore:
			if v.Reason != brandguard.ReasonRetiredType || v.Err == nil {
				t.Fatalf("ignore without reason: %+v", v)
			}
		case brandguard.ActionReject:
			if !known[v.Reason] || v.Err == nil {
				t.Fatalf("reject with unknown reason or no error: %+v", v)
			}
			matched := false
			for _, s := range sentinels {
				matched = matched || errors.Is(v.Err, s)
			}
			if !matched {
				t.Fatalf("reject error wraps no sentinel: %v", v.Err)
			}
			if (v.Reason == brandguard.ReasonLegacySchema) != (v.Signal != nil) {
				t.Fatalf("signal only and always for legacy: %+v", v)
			}
		default:
			t.Fatalf("no action: %+v", v)
		}
	})
}
