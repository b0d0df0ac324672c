package consumer_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/dedup"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// TestBadInputCatalogue pushes every class of bad stream entry we know of,
// raw, through real Redis into a running consumer (with the Redis dedup
// store), interleaved with good entries. Each ends where its rule says —
// dead-lettered with its reason and counted, or acknowledged as unhandled,
// ignored or duplicate — none reaches a handler, and the good entries keep
// flowing. docs/reliability.md lists the classes.
func TestBadInputCatalogue(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	store, err := dedup.NewRedis(dedup.RedisConfig{Client: rdb, Prefix: prefix + "dedup:"})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := fastConfig(rdb, stream, handlersFor(rec.handle))
	cfg.Dedup = store
	h := start(t, cfg)

	n := 0
	good := func() map[string]any {
		n++
		return map[string]any{"event_id": fmt.Sprintf("bad-%02d", n), "event_type": "BET_SETTLED_CONFIRMED",
			"schema_version": "2", "brand_id": "3", "occurred_at": "2026-05-15T10:20:30Z", "aggregate_id": "bet-1",
			"payload": `{"amount":"1.00"}`}
	}
	const absent = "\x00absent"
	mut := func(kv ...string) map[string]any {
		f := good()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == absent {
				delete(f, kv[i])
			} else {
				f[kv[i]] = kv[i+1]
			}
		}
		return f
	}
	type outcome string // a brandguard reason, or one of the outcomes below
	const (
		unhandled outcome = "unhandled"
		ignored   outcome = "ignored"
		duplicate outcome = "duplicate"
		applied   outcome = "applied"
	)
	reason := func(r brandguard.Reason) outcome { return outcome(r) }
	huge := strings.Repeat("9", 40)
	cases := []struct {
		class  string
		fields map[string]any
		want   outcome
	}{
		{"event_id missing", mut("event_id", absent), reason(brandguard.ReasonMalformed)},
		{"event_type missing", mut("event_type", absent), reason(brandguard.ReasonMalformed)},
		{"schema_version missing", mut("schema_version", absent), reason(brandguard.ReasonUnsupportedSchema)},
		{"brand_id missing", mut("brand_id", absent), reason(brandguard.ReasonMissingBrand)},
		{"occurred_at missing", mut("occurred_at", absent), reason(brandguard.ReasonMalformed)},
		{"aggregate_id missing", mut("aggregate_id", absent), reason(brandguard.ReasonMalformed)},
		{"payload missing", mut("payload", absent), reason(brandguard.ReasonMalformed)},
		{"every field missing", map[string]any{"unrelated": "x"}, reason(brandguard.ReasonUnsupportedSchema)},
		{"schema_version 0", mut("schema_version", "0"), reason(brandguard.ReasonUnsupportedSchema)},
		{"schema_version 1", mut("schema_version", "1"), reason(brandguard.ReasonLegacySchema)},
		{"schema_version -1", mut("schema_version", "-1"), reason(brandguard.ReasonUnsupportedSchema)},
		{"schema_version 2.5", mut("schema_version", "2.5"), reason(brandguard.ReasonUnsupportedSchema)},
		{"schema_version 3 (read by the version 2 rules)", mut("schema_version", "3"), applied},
		{"schema_version 99 (read by the version 2 rules)", mut("schema_version", "99"), applied},
		{"schema_version huge", mut("schema_version", huge), reason(brandguard.ReasonUnsupportedSchema)},
		{"schema_version text", mut("schema_version", "two"), reason(brandguard.ReasonUnsupportedSchema)},
		{"brand_id 0", mut("brand_id", "0"), reason(brandguard.ReasonUnparseableBrand)}, // docs/wire-format.md: positive, else unparseable
		{"brand_id -1", mut("brand_id", "-1"), reason(brandguard.ReasonUnparseableBrand)},
		{"brand_id text", mut("brand_id", "brand-three"), reason(brandguard.ReasonUnparseableBrand)},
		{"brand_id overflow", mut("brand_id", huge), reason(brandguard.ReasonUnparseableBrand)},
		{"brand_id empty", mut("brand_id", ""), reason(brandguard.ReasonUnparseableBrand)},
		{"brand_id 3.0", mut("brand_id", "3.0"), reason(brandguard.ReasonUnparseableBrand)},
		{"occurred_at not a time", mut("occurred_at", "yesterday"), reason(brandguard.ReasonMalformed)},
		{"occurred_at out of range", mut("occurred_at", "2026-13-45T99:99:99Z"), reason(brandguard.ReasonMalformed)},
		{"occurred_at without zone", mut("occurred_at", "2026-05-15T10:20:30"), reason(brandguard.ReasonMalformed)},
		{"payload not JSON", mut("payload", "{not json"), reason(brandguard.ReasonMalformed)},
		{"payload truncated", mut("payload", `{"amount": "1.0`), reason(brandguard.ReasonMalformed)},
		{"payload empty", mut("payload", ""), reason(brandguard.ReasonMalformed)},
		{"payload 4 MB", mut("payload", `"`+strings.Repeat("x", 4<<20)+`"`), reason(brandguard.ReasonTooLarge)},
		{"payload not UTF-8", mut("payload", "{\"a\":\"\xff\xfe\"}"), reason(brandguard.ReasonMalformed)},
		{"event_id not UTF-8", mut("event_id", "id-\xff"), reason(brandguard.ReasonMalformed)},
		{"event_type lower case", mut("event_type", "bet_settled_confirmed"), reason(brandguard.ReasonMalformed)},
		{"event_type markup", mut("event_type", "<script>alert(1)</script>"), reason(brandguard.ReasonMalformed)},
		{"event_type unknown", mut("event_type", "SOMETHING_NEW"), unhandled},
		{"event_type producer-only", mut("event_type", "DEPOSIT_APPROVED"), unhandled},
		{"event_type retired", mut("event_type", string(platform.BrandAwarePublishingBegins)), ignored},
		{"retired sentinel without aggregate_id, payload, brand_id", mut("event_type", string(platform.BrandAwarePublishingBegins),
			"aggregate_id", absent, "payload", absent, "brand_id", absent), ignored},
		{"extra unknown fields", mut("x_extra", "tolerated"), applied},
		{"traceparent invalid", mut("traceparent", "not-a-traceparent"), applied},
		{"duplicate event_id, other content", mut("event_id", "bad-dup", "payload", `{"amount":"999.00"}`), duplicate},
	}
	// The original of the duplicate goes first.
	publish(t, rdb, stream, envelope("bad-dup", platform.BetSettledConfirmed, "bet-dup", 3, map[string]string{"amount": "1.00"}))
	testkit.Eventually(t, 5*time.Second, "the original applied", func() bool { return rec.times("bad-dup") == 1 })
	entryClass := map[string]int{}
	for i, c := range cases {
		id := publishRaw(t, rdb, stream, c.fields)
		entryClass[id] = i
		if i%5 == 0 { // good entries keep flowing between the bad ones
			publish(t, rdb, stream, envelope(fmt.Sprintf("good-%d", i), platform.BetSettledConfirmed, "bet-good", 3, nil))
		}
	}
	publish(t, rdb, stream, envelope("good-last", platform.BetSettledConfirmed, "bet-good", 3, nil))
	if len(cases) < 25 {
		t.Fatalf("the catalogue has %d classes; keep at least 25", len(cases))
	}

	wantDead := map[outcome]int{}
	for _, c := range cases {
		switch c.want {
		case unhandled, ignored, duplicate, applied:
		default:
			wantDead[c.want]++
		}
	}
	total := 0
	for _, n := range wantDead {
		total += n
	}
	testkit.Eventually(t, 15*time.Second, "every bad entry judged and the good ones applied", func() bool {
		return len(h.deadLetters()) == total && rec.times("good-last") == 1 && h.pending() == 0
	})

	got := map[int]outcome{}
	for _, m := range h.deadLetters() {
		i, ok := entryClass[m.Values["dlq_id"].(string)]
		if !ok {
			t.Errorf("unexpected dead letter %v", m.Values["dlq_id"])
			continue
		}
		got[i] = outcome(m.Values["dlq_reason"].(string))
		if m.Values["dlq_error"] == "" {
			t.Errorf("%s: dead letter without error text", cases[i].class)
		}
	}
	for i, c := range cases {
		switch c.want {
		case unhandled, ignored, duplicate, applied:
			if r, dead := got[i]; dead {
				t.Errorf("%s: dead-lettered as %s, want %s", c.class, r, c.want)
			}
		default:
			if got[i] != c.want {
				t.Errorf("%s: dead-lettered as %q, want %q", c.class, got[i], c.want)
			}
		}
	}
	for r, n := range wantDead {
		if got := h.counter("headway_consumer_dead_lettered_total", map[string]string{"reason": string(r)}); int(got) != n {
			t.Errorf("dead_lettered_total{reason=%s} = %v, want %d", r, got, n)
		}
	}
	if got := h.counter("event_legacy_schema_total", nil); got != 1 {
		t.Errorf("event_legacy_schema_total = %v, want 1", got)
	}
	for _, w := range []struct {
		typ     event.Type
		outcome string
		n       float64
	}{
		{platform.DepositApproved, consumer.OutcomeUnhandled, 1},
		{platform.BrandAwarePublishingBegins, consumer.OutcomeIgnored, 2}, // one whole, one without most fields
		{platform.BetSettledConfirmed, consumer.OutcomeDuplicate, 1},
	} {
		if got := h.outcome(w.typ, w.outcome); got != w.n {
			t.Errorf("entries_total{%s,%s} = %v, want %v", w.typ, w.outcome, got, w.n)
		}
	}
	if got := h.counter("headway_consumer_entries_total", map[string]string{"event_type": "other", "outcome": consumer.OutcomeUnhandled}); got != 1 {
		t.Errorf("unknown type counted as %v unhandled entries of type other, want 1", got)
	}
	// Only the good entries, the tolerated (and later-version) ones and the original of the
	// duplicate reached the handler, each once.
	for id, n := range rec.count {
		if n != 1 {
			t.Errorf("%s handled %d times", id, n)
		}
	}
	tolerated := 0
	for _, c := range cases {
		if c.want == applied {
			tolerated++
		}
	}
	if want := 1 + (len(cases)+4)/5 + 1 + tolerated; rec.n() != want {
		t.Errorf("handler ran %d times, want %d (good entries, the %d tolerated ones, the original)", rec.n(), want, tolerated)
	}
}
