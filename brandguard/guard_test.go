package brandguard_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/platform"
)

const (
	stream   = "events:{wallet}"
	consumer = "rolling_service"
)

func fields(kv ...string) map[string]any {
	f := map[string]any{
		"event_id": "evt-1", "event_type": "BET_SETTLED_CONFIRMED", "schema_version": "2", "brand_id": "7",
		"occurred_at": "2026-05-15T10:20:30Z", "aggregate_id": "bet-1", "payload": `{"amount":"1.00"}`,
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "<absent>" {
			delete(f, kv[i])
			continue
		}
		f[kv[i]] = kv[i+1]
	}
	return f
}

type fixture struct {
	reg   *prometheus.Registry
	guard *brandguard.Guard
	scope *brandguard.Scope
	logs  *bytes.Buffer
}

func newFixture(t *testing.T, mode brandguard.Mode) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewPedanticRegistry(), logs: &bytes.Buffer{}}
	g, err := brandguard.New(brandguard.Config{Catalog: platform.Catalog(),
		Mode: mode, Registerer: f.reg,
		Logger: slog.New(slog.NewTextHandler(f.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.guard, f.scope = g, g.Scope(stream, consumer)
	return f
}

// TestConsumerRules has one row per consumer rule of the event catalog's
// multi-brand section (and the decoding failures around them), in both modes.
func TestConsumerRules(t *testing.T) {
	tests := []struct {
		rule     string
		fields   map[string]any
		action   brandguard.Action
		reason   brandguard.Reason
		sentinel error
		signal   bool
	}{
		{"v2 with brand: accepted, brand from the envelope", fields(), brandguard.ActionAccept, brandguard.ReasonNone, nil, false},
		{"v2 missing brand_id: rejected", fields("brand_id", "<absent>"), brandguard.ActionReject, brandguard.ReasonMissingBrand, brandguard.ErrMissingBrand, false},
		{"v2 empty brand_id: rejected", fields("brand_id", ""), brandguard.ActionReject, brandguard.ReasonUnparseableBrand, brandguard.ErrUnparseableBrand, false},
		{"v2 text brand_id: rejected", fields("brand_id", "acme"), brandguard.ActionReject, brandguard.ReasonUnparseableBrand, event.ErrBadBrandID, false},
		{"v2 zero brand_id: rejected", fields("brand_id", "0"), brandguard.ActionReject, brandguard.ReasonUnparseableBrand, brandguard.ErrUnparseableBrand, false},
		{"v2 overflowing brand_id: rejected", fields("brand_id", "18446744073709551616"), brandguard.ActionReject, brandguard.ReasonUnparseableBrand, brandguard.ErrUnparseableBrand, false},
		{"v1: counted, rejected, surfaced", fields("schema_version", "1", "brand_id", "<absent>"), brandguard.ActionReject, brandguard.ReasonLegacySchema, brandguard.ErrLegacySchema, true},
		{"v1 with a brand: still legacy", fields("schema_version", "1"), brandguard.ActionReject, brandguard.ReasonLegacySchema, brandguard.ErrLegacySchema, true},
		{"v1 and malformed: still legacy", fields("schema_version", "1", "occurred_at", "never"), brandguard.ActionReject, brandguard.ReasonLegacySchema, event.ErrBadTimestamp, true},
		{"retired sentinel: ignored", fields("event_type", "BRAND_AWARE_PUBLISHING_BEGINS"), brandguard.ActionIgnore, brandguard.ReasonRetiredType, nil, false},
		{"schema_version 0: rejected", fields("schema_version", "0"), brandguard.ActionReject, brandguard.ReasonUnsupportedSchema, brandguard.ErrUnsupportedSchema, false},
		{"schema_version 3: read by the version 2 rules", fields("schema_version", "3"), brandguard.ActionAccept, brandguard.ReasonNone, nil, false},
		{"schema_version 99: read by the version 2 rules", fields("schema_version", "99"), brandguard.ActionAccept, brandguard.ReasonNone, nil, false},
		{"schema_version 3 without brand: rejected", fields("schema_version", "3", "brand_id", "<absent>"), brandguard.ActionReject, brandguard.ReasonMissingBrand, brandguard.ErrMissingBrand, false},
		{"schema_version beyond int32: rejected", fields("schema_version", "2147483648"), brandguard.ActionReject, brandguard.ReasonUnsupportedSchema, event.ErrBadSchemaVersion, false},
		{"sentinel without aggregate_id, payload, brand: ignored", fields("event_type", "BRAND_AWARE_PUBLISHING_BEGINS", "aggregate_id", "<absent>", "payload", "<absent>", "brand_id", "<absent>"), brandguard.ActionIgnore, brandguard.ReasonRetiredType, nil, false},
		{"sentinel of schema_version 1 without fields: ignored", fields("event_type", "BRAND_AWARE_PUBLISHING_BEGINS", "schema_version", "1", "aggregate_id", "<absent>", "occurred_at", "<absent>"), brandguard.ActionIgnore, brandguard.ReasonRetiredType, nil, false},
		{"schema_version missing: rejected", fields("schema_version", "<absent>"), brandguard.ActionReject, brandguard.ReasonUnsupportedSchema, event.ErrMissingField, false},
		{"payload not JSON: malformed", fields("payload", "{"), brandguard.ActionReject, brandguard.ReasonMalformed, event.ErrPayloadNotJSON, false},
		{"event_id missing: malformed", fields("event_id", "<absent>"), brandguard.ActionReject, brandguard.ReasonMalformed, brandguard.ErrMalformed, false},
		{"too large: rejected", fields("payload", `"`+strings.Repeat("x", 2<<20)+`"`), brandguard.ActionReject, brandguard.ReasonTooLarge, brandguard.ErrTooLarge, false},
		{"unknown event type: accepted (the consumer acks it as unhandled)", fields("event_type", "SOMETHING_NEW"), brandguard.ActionAccept, brandguard.ReasonNone, nil, false},
	}
	for _, mode := range []brandguard.Mode{brandguard.ModeObserve, brandguard.ModeEnforce} {
		for _, tt := range tests {
			t.Run(mode.String()+"/"+tt.rule, func(t *testing.T) {
				f := newFixture(t, mode)
				env, v := f.scope.Decode(tt.fields)
				if v.Action != tt.action || v.Reason != tt.reason {
					t.Fatalf("verdict = %v/%q (%v), want %v/%q", v.Action, v.Reason, v.Err, tt.action, tt.reason)
				}
				if tt.sentinel != nil && !errors.Is(v.Err, tt.sentinel) {
					t.Errorf("verdict error %v does not match %v", v.Err, tt.sentinel)
				}
				if (v.Action == brandguard.ActionAccept) != (v.Err == nil) {
					t.Errorf("accept must come without an error and the rest with one: %v", v.Err)
				}
				if (v.Signal != nil) != tt.signal {
					t.Errorf("signal = %v, want present=%v", v.Signal, tt.signal)
				}
				if v.Signal != nil && (v.Signal.Stream != stream || v.Signal.Consumer != consumer || v.Signal.Reason != brandguard.ReasonLegacySchema) {
					t.Errorf("signal = %+v", v.Signal)
				}
				if v.Accepted() && env.BrandID != 7 {
					t.Errorf("accepted with brand %d, want the envelope's 7", env.BrandID)
				}
				wantLegacy := 0.0
				if tt.reason == brandguard.ReasonLegacySchema {
					wantLegacy = 1
				}
				if got := legacyTotal(t, f.reg); got != wantLegacy {
					t.Errorf("event_legacy_schema_total = %v, want %v", got, wantLegacy)
				}
			})
		}
	}
}

// legacyTotal sums event_legacy_schema_total over all series in reg.
func legacyTotal(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() == brandguard.LegacySchemaMetric {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

func TestTargetCheck(t *testing.T) {
	env := event.Envelope{EventID: "evt-9", EventType: platform.BetSettledConfirmed, SchemaVersion: 2, BrandID: 7}
	ctx := context.Background()

	t.Run("same brand", func(t *testing.T) {
		for _, mode := range []brandguard.Mode{brandguard.ModeObserve, brandguard.ModeEnforce} {
			f := newFixture(t, mode)
			if b, err := f.scope.CheckTarget(ctx, env, 7); b != 7 || err != nil {
				t.Errorf("%v: CheckTarget = %d, %v", mode, b, err)
			}
		}
	})
	t.Run("observe: log, count, use the envelope brand", func(t *testing.T) {
		f := newFixture(t, brandguard.ModeObserve)
		b, err := f.scope.CheckTarget(ctx, env, 8)
		if b != 7 || err != nil {
			t.Fatalf("CheckTarget = %d, %v; want 7, nil", b, err)
		}
		for _, want := range []string{"level=WARN", "brand mismatch", "event_id=evt-9", "envelope_brand=7", "target_brand=8", "mode=observe"} {
			if !strings.Contains(f.logs.String(), want) {
				t.Errorf("log %q lacks %q", f.logs.String(), want)
			}
		}
		if err := testutil.GatherAndCompare(f.reg, strings.NewReader(`
# HELP headway_brandguard_brand_mismatch_total Events whose envelope brand differed from the target entity's brand, by enforcement mode.
# TYPE headway_brandguard_brand_mismatch_total counter
headway_brandguard_brand_mismatch_total{consumer="rolling_service",mode="observe",stream="events:{wallet}"} 1
`), "headway_brandguard_brand_mismatch_total"); err != nil {
			t.Error(err)
		}
	})
	t.Run("enforce: reject", func(t *testing.T) {
		f := newFixture(t, brandguard.ModeEnforce)
		b, err := f.scope.CheckTarget(ctx, env, 8)
		var me *brandguard.MismatchError
		if b != 0 || !errors.Is(err, brandguard.ErrBrandMismatch) || !errors.As(err, &me) || me.Envelope != 7 || me.Other != 8 {
			t.Fatalf("CheckTarget = %d, %v; want 0 and a MismatchError 7 vs 8", b, err)
		}
		if errors.Is(err, brandguard.ErrOwnerBrandMismatch) {
			t.Error("a target mismatch must not match the producer sentinel")
		}
		if err := testutil.GatherAndCompare(f.reg, strings.NewReader(`
# HELP headway_brandguard_brand_mismatch_total Events whose envelope brand differed from the target entity's brand, by enforcement mode.
# TYPE headway_brandguard_brand_mismatch_total counter
headway_brandguard_brand_mismatch_total{consumer="rolling_service",mode="enforce",stream="events:{wallet}"} 1
`), "headway_brandguard_brand_mismatch_total"); err != nil {
			t.Error(err)
		}
	})
	t.Run("invalid target: error in both modes", func(t *testing.T) {
		for _, mode := range []brandguard.Mode{brandguard.ModeObserve, brandguard.ModeEnforce} {
			f := newFixture(t, mode)
			if _, err := f.scope.CheckTarget(ctx, env, 0); !errors.Is(err, brandguard.ErrInvalidBrand) {
				t.Errorf("%v: %v, want ErrInvalidBrand", mode, err)
			}
		}
	})
}

// TestProducerInvariant: the envelope brand must equal the owning row's brand.
func TestProducerInvariant(t *testing.T) {
	env := event.Envelope{EventID: "evt-3", EventType: platform.DepositApproved, SchemaVersion: 2, BrandID: 5,
		OccurredAt: time.Now(), AggregateID: "dep-1", Payload: []byte(`{}`)}
	f := newFixture(t, brandguard.ModeObserve) // the mode does not soften the producer rule
	ctx := context.Background()
	if err := f.guard.CheckProducer(ctx, stream, 5, env); err != nil {
		t.Fatalf("matching brands refused: %v", err)
	}
	err := f.guard.CheckProducer(ctx, stream, 6, env)
	var me *brandguard.MismatchError
	if !errors.Is(err, brandguard.ErrOwnerBrandMismatch) || !errors.As(err, &me) || !me.Producer || me.Other != 6 {
		t.Fatalf("mismatch: %v, want ErrOwnerBrandMismatch", err)
	}
	if !strings.Contains(f.logs.String(), "level=ERROR") || !strings.Contains(f.logs.String(), "owner_brand=6") {
		t.Errorf("violation not logged: %s", f.logs)
	}
	if err := brandguard.CheckOwner(0, env); !errors.Is(err, brandguard.ErrInvalidBrand) {
		t.Errorf("owner brand 0: %v", err)
	}
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(`
# HELP headway_brandguard_producer_violations_total Outbox writes refused because the envelope brand differed from the owning row's brand.
# TYPE headway_brandguard_producer_violations_total counter
headway_brandguard_producer_violations_total{stream="events:{agent}"} 0
headway_brandguard_producer_violations_total{stream="events:{player}"} 0
headway_brandguard_producer_violations_total{stream="events:{rolling}"} 0
headway_brandguard_producer_violations_total{stream="events:{wallet}"} 1
`), "headway_brandguard_producer_violations_total"); err != nil {
		t.Error(err)
	}
}

// TestProducerViolationSeriesStartAtZero: every stream of the catalog has
// its producer-violation series at 0 before any violation, so increase()
// and the dashboard see the first one.
func TestProducerViolationSeriesStartAtZero(t *testing.T) {
	const want = `
# HELP headway_brandguard_producer_violations_total Outbox writes refused because the envelope brand differed from the owning row's brand.
# TYPE headway_brandguard_producer_violations_total counter
headway_brandguard_producer_violations_total{stream="events:{agent}"} 0
headway_brandguard_producer_violations_total{stream="events:{player}"} 0
headway_brandguard_producer_violations_total{stream="events:{rolling}"} 0
headway_brandguard_producer_violations_total{stream="events:{wallet}"} 0
`
	f := newFixture(t, brandguard.ModeEnforce)
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "headway_brandguard_producer_violations_total"); err != nil {
		t.Error(err)
	}

	// A catalog of its own: its streams, not the platform's.
	c := &event.Catalog{Streams: []event.StreamInfo{
		{Name: "orders", Producer: "order_service", Types: []event.TypeInfo{{Type: "ORDER_PLACED", Status: event.StatusEmitted}}},
	}}
	reg := prometheus.NewPedanticRegistry()
	if _, err := brandguard.New(brandguard.Config{Catalog: c, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP headway_brandguard_producer_violations_total Outbox writes refused because the envelope brand differed from the owning row's brand.
# TYPE headway_brandguard_producer_violations_total counter
headway_brandguard_producer_violations_total{stream="events:{orders}"} 0
`), "headway_brandguard_producer_violations_total"); err != nil {
		t.Error(err)
	}
}

func TestMetricsExposition(t *testing.T) {
	f := newFixture(t, brandguard.ModeEnforce)
	f.scope.Decode(fields())
	f.scope.Decode(fields("schema_version", "1"))
	f.scope.Decode(fields("schema_version", "1"))
	f.scope.Decode(fields("event_type", "BRAND_AWARE_PUBLISHING_BEGINS"))
	f.guard.Scope("events:{wallet}", "promotion_service").Decode(fields("brand_id", "<absent>"))

	err := testutil.GatherAndCompare(f.reg, strings.NewReader(`
# HELP event_legacy_schema_total Stream entries with the legacy schema_version 1, rejected.
# TYPE event_legacy_schema_total counter
event_legacy_schema_total{consumer="promotion_service",stream="events:{wallet}"} 0
event_legacy_schema_total{consumer="rolling_service",stream="events:{wallet}"} 2
`), brandguard.LegacySchemaMetric)
	if err != nil {
		t.Error(err)
	}
	var b strings.Builder
	mfs, _ := f.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "headway_brandguard_verdicts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v > 0 {
				for _, l := range m.GetLabel() {
					b.WriteString(l.GetName() + "=" + l.GetValue() + " ")
				}
				b.WriteString("\n")
			}
		}
	}
	want := "action=accept consumer=rolling_service reason= stream=events:{wallet} \n" +
		"action=ignore consumer=rolling_service reason=retired_type stream=events:{wallet} \n" +
		"action=reject consumer=promotion_service reason=missing_brand stream=events:{wallet} \n" +
		"action=reject consumer=rolling_service reason=legacy_schema stream=events:{wallet} \n"
	if b.String() != want {
		t.Errorf("non-zero verdict series:\n%s\nwant\n%s", b.String(), want)
	}
	problems, err := testutil.GatherAndLint(f.reg)
	if err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestNewTwiceOnOneRegistererSharesSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := brandguard.New(brandguard.Config{Catalog: platform.Catalog(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	b, err := brandguard.New(brandguard.Config{Catalog: platform.Catalog(), Registerer: reg})
	if err != nil {
		t.Fatalf("second New on the same registerer: %v", err)
	}
	a.Scope(stream, consumer).Decode(fields("schema_version", "1"))
	b.Scope(stream, consumer).Decode(fields("schema_version", "1"))
	if got := legacyTotal(t, reg); got != 2 {
		t.Fatalf("legacy count = %v, want 2 (shared series)", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := brandguard.New(brandguard.Config{Catalog: platform.Catalog(), Mode: 9}); !errors.Is(err, brandguard.ErrInvalidMode) {
		t.Errorf("mode 9: %v", err)
	}
	bad := platform.Catalog()
	bad.Streams[0].Types = nil
	if _, err := brandguard.New(brandguard.Config{Catalog: bad}); !errors.Is(err, event.ErrInvalidCatalog) {
		t.Errorf("invalid catalog: %v", err)
	}
	if _, err := brandguard.New(brandguard.Config{Catalog: platform.Catalog()}); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

func TestModeFromEnv(t *testing.T) {
	env := func(v string, set bool) func(string) (string, bool) {
		return func(k string) (string, bool) {
			if k != brandguard.EnvVar {
				t.Fatalf("looked up %q", k)
			}
			return v, set
		}
	}
	tests := []struct {
		value string
		set   bool
		want  brandguard.Mode
		err   bool
	}{
		{"", false, brandguard.ModeEnforce, false},
		{"observe", true, brandguard.ModeObserve, false},
		{"enforce", true, brandguard.ModeEnforce, false},
		{" Observe ", true, brandguard.ModeObserve, false},
		{"", true, 0, true},
		{"obsrve", true, 0, true},
		{"true", true, 0, true},
		{"off", true, 0, true},
	}
	for _, tt := range tests {
		m, err := brandguard.ModeFromEnv(env(tt.value, tt.set))
		if tt.err {
			if !errors.Is(err, brandguard.ErrInvalidMode) || !strings.Contains(err.Error(), brandguard.EnvVar) {
				t.Errorf("%q: err = %v, want ErrInvalidMode naming %s", tt.value, err, brandguard.EnvVar)
			}
			continue
		}
		if err != nil || m != tt.want {
			t.Errorf("%q (set=%v): %v, %v; want %v", tt.value, tt.set, m, err, tt.want)
		}
	}
}
