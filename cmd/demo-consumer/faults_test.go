package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/testkit"
)

// The faults that trigger HeadwayProducerBrandViolations and
// HeadwayWorkerStopped (deploy/prometheus/headway-alerts.yml).

func TestDemoProducerViolationIsRefusedAndCounted(t *testing.T) {
	d := startDemo(t, "-fault-producer-violation", "0.2")
	const violations = `headway_brandguard_producer_violations_total`
	var scrape string
	testkit.Eventually(t, 20*time.Second, "a producer violation counted while the producer keeps writing", func() bool {
		_, scrape = d.get(t, "/metrics")
		return counter(scrape, violations, `stream="events:{wallet}"`) > 0 &&
			counter(scrape, "headway_outbox_written_total", `stream="events:{wallet}"`) >= 50
	})
	if n := counter(scrape, "headway_outbox_write_refused_total", `reason="brand_mismatch"`); n == 0 {
		t.Errorf("headway_outbox_write_refused_total{reason=brand_mismatch} = 0 beside %v violations", counter(scrape, violations))
	}
	logs := d.log()
	for _, want := range []string{"outbox write refused: envelope brand differs from owning row",
		"injected producer brand violation refused; its transaction was rolled back"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no log line %q", want)
		}
	}
	if strings.Contains(logs, "wallet write failed") || strings.Contains(logs, "violation was written") {
		t.Error("a refused violation is logged as a failed or successful wallet write")
	}
	// The refused events were never written, so no consumer sees one.
	if n := counter(scrape, "headway_consumer_dead_lettered_total", `reason="brand_mismatch"`); n != 0 {
		t.Errorf("%v brand mismatches dead-lettered: a refused write reached the stream", n)
	}
	// The writer's check reports the violation; the wallet loop itself is
	// fine.
	_, body := d.get(t, "/ready?full=1")
	if !strings.Contains(body, `"outbox/writer": "producer brand violation`) ||
		!strings.Contains(body, `"loop/wallet-producer": "OK"`) {
		t.Errorf("/ready?full=1 = %s; want outbox/writer naming the violation and loop/wallet-producer OK", body)
	}
}

func TestDemoStoppedWorker(t *testing.T) {
	d := startDemo(t, "-fault-stop", "promotion")
	const status = "headway_supervisor_service_status"
	testkit.Eventually(t, 20*time.Second, `service status stopped = 1 for promotion`, func() bool {
		_, scrape := d.get(t, "/metrics")
		return counter(scrape, status, `worker="promotion"`, `status="stopped"`) == 1 &&
			counter(scrape, status, `worker="rolling"`, `status="running"`) == 1
	})
	body := d.waitNotReady(t, 10*time.Second, `"service/promotion": "stopped`)
	if !strings.Contains(body, "injected permanent failure (-fault-stop)") {
		t.Errorf("service/promotion stopped without its error: %s", body)
	}
}

// The faults that trigger HeadwayOutboxBacklogUnmeasured (-fault-crash of
// the relay and the observer together) and HeadwayLoopBehind (-fault-slow).

func TestDemoFaultFlags(t *testing.T) {
	lookup := func(string) (string, bool) { return "", false }
	c, err := parseConfig([]string{"-fault-crash", "relay,outbox-observer", "-fault-slow", "promotion=200ms"}, lookup, io.Discard)
	if err != nil || !slices.Equal(c.crash, []string{"relay", "outbox-observer"}) || c.slow != "promotion" || c.slowBy != 200*time.Millisecond {
		t.Fatalf("parseConfig = crash %q, slow %q by %v, %v", c.crash, c.slow, c.slowBy, err)
	}
	for _, bad := range [][]string{{"-fault-crash", "relay,nope"}, {"-fault-crash", "relay", "-fault-stop", "relay"},
		{"-fault-slow", "promotion"}, {"-fault-slow", "relay=1s"}, {"-fault-slow", "rolling=0s"}} {
		if _, err := parseConfig(bad, lookup, io.Discard); err == nil {
			t.Errorf("parseConfig(%q): no error", bad)
		}
	}
}

func TestDemoBacklogUnmeasuredWhileRelayAndObserverCrash(t *testing.T) {
	d := startDemo(t, "-fault-crash", "relay,outbox-observer")
	const status = "headway_supervisor_service_status"
	testkit.Eventually(t, 20*time.Second, "relay and outbox-observer in backoff, nothing measuring the backlog", func() bool {
		_, scrape := d.get(t, "/metrics")
		return counter(scrape, status, `worker="relay"`, `status="backoff"`) == 1 &&
			counter(scrape, status, `worker="outbox-observer"`, `status="backoff"`) == 1
	})
	_, scrape := d.get(t, "/metrics")
	if v := counter(scrape, "headway_outbox_backlog_measured_timestamp_seconds"); v > 0 {
		t.Errorf("headway_outbox_backlog_measured_timestamp_seconds = %v with neither the relay nor the observer running", v)
	}
}

func TestDemoSlowConsumerFallsBehind(t *testing.T) {
	d := startDemo(t, "-fault-slow", "promotion=150ms", "-stall-window", "2s")
	const status = "headway_loop_status"
	testkit.Eventually(t, 30*time.Second, "promotion behind while rolling keeps up", func() bool {
		_, scrape := d.get(t, "/metrics")
		return counter(scrape, status, `loop="promotion_service@events:{wallet}"`, `status="behind"`) == 1 &&
			counter(scrape, status, `loop="rolling_service@events:{wallet}"`, `status="behind"`) == 0
	})
}
