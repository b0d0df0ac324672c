package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// TestEnforceModeNeverAppliesAnotherBrand is adversarial: for a target of
// brand 3, entries claim brand 3 in every spelling a lenient parser might
// take (and other brands outright). In enforce mode the handler's
// CheckTarget lets through only envelopes whose brand is exactly 3; the
// rest never reach the projection.
func TestEnforceModeNeverAppliesAnotherBrand(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	var mu sync.Mutex
	applied := map[string]event.BrandID{}
	handler := func(ctx context.Context, m *consumer.Message) error {
		brand, err := m.CheckTarget(ctx, 3)
		if err != nil {
			return err
		}
		mu.Lock()
		applied[m.Envelope.EventID] = brand
		mu.Unlock()
		return nil
	}
	h := start(t, fastConfig(rdb, stream, handlersFor(handler)))
	spellings := []string{"4", "2", "03", "+3", " 3", "3 ", "3\x00", "0x3", "3e0", "3.0", "-3", "١", "3" + strings.Repeat("0", 30),
		"9223372036854775811", "18446744073709551619"}
	for i, b := range spellings {
		publishRaw(t, rdb, stream, map[string]any{"event_id": fmt.Sprintf("adv-%d", i), "event_type": "BET_SETTLED_CONFIRMED",
			"schema_version": "2", "brand_id": b, "occurred_at": "2026-05-15T10:20:30Z", "aggregate_id": fmt.Sprintf("bet-%d", i),
			"payload": "{}"})
	}
	publish(t, rdb, stream, envelope("honest", platform.BetSettledConfirmed, "bet-h", 3, nil))
	testkit.Eventually(t, 10*time.Second, "every entry judged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(h.deadLetters()) == len(spellings) && applied["honest"] == 3 && h.pending() == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 1 {
		t.Fatalf("applied %v; only the honest brand-3 event may be", applied)
	}
	for _, m := range h.deadLetters() {
		if r := m.Values["dlq_reason"]; r != string(brandguard.ReasonBrandMismatch) && r != string(brandguard.ReasonUnparseableBrand) {
			t.Errorf("%v dead-lettered as %v", m.Values["event_id"], r)
		}
	}
}

// TestPayloadsNeverReachLogsMetricsOrProbes: payloads are business data;
// headway's logs, metrics and /ready never show them, whatever happens to
// the event (applied, failed, dead-lettered for any reason).
func TestPayloadsNeverReachLogsMetricsOrProbes(t *testing.T) {
	const secret = "SECRET-PAYLOAD-7f3a"
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	handler := func(ctx context.Context, m *consumer.Message) error {
		if strings.Contains(m.Envelope.EventID, "fail") {
			return consumer.Permanent(errors.New("rejected by the handler")) // the error text is the handler's
		}
		return nil
	}
	cfg := fastConfig(rdb, stream, handlersFor(handler))
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "sec"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Watermark = wm
	h := start(t, cfg)
	probes, _ := readiness.NewProbes(readiness.ProbesConfig{Registerer: h.reg})
	if err := probes.AddLoop(wm); err != nil {
		t.Fatal(err)
	}
	payload := fmt.Sprintf(`{"card":"%s"}`, secret)
	base := func(id string) map[string]any {
		return map[string]any{"event_id": id, "event_type": "BET_SETTLED_CONFIRMED", "schema_version": "2", "brand_id": "3",
			"occurred_at": "2026-05-15T10:20:30Z", "aggregate_id": "bet-" + id, "payload": payload}
	}
	ok, fail, legacy, broken, big := base("ok"), base("fail"), base("legacy"), base("broken"), base("big")
	legacy["schema_version"] = "1"
	broken["payload"] = `{"card":"` + secret // not JSON
	big["payload"] = `"` + secret + strings.Repeat("x", event.DefaultMaxEntryBytes) + `"`
	for _, f := range []map[string]any{ok, fail, legacy, broken, big} {
		publishRaw(t, rdb, stream, f)
	}
	testkit.Eventually(t, 10*time.Second, "all judged", func() bool { return len(h.deadLetters()) == 4 && h.pending() == 0 })

	srv := httptest.NewServer(promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	get := func(url string) string {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	psrv := httptest.NewServer(probes)
	defer psrv.Close()
	for what, text := range map[string]string{"logs": h.logs.String(), "/metrics": get(srv.URL),
		"/ready?full=1": get(psrv.URL + "/ready?full=1"), "watermark": fmt.Sprint(wm.Status(), wm.Snapshot().LastError)} {
		if strings.Contains(text, secret) {
			t.Errorf("%s contain the payload", what)
		}
	}
	if !strings.Contains(h.logs.String(), "dead-lettered") {
		t.Fatal("the logs were not captured; the check above proves nothing")
	}
}
