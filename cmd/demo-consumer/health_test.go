package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
)

// The health truth table on a real process: each fault makes /ready 503
// with a reason naming what is wrong, /live stays 200 throughout (a
// restart would not help), and /ready is 200 again once the fault ends.
// The hung handler is TestDemoHungHandlerMakesItNotReadyButLive; an idle
// consumer staying ready is TestIdleConsumerStaysReady in package consumer
// (it needs a fast clock).

func (d *demo) waitReady(t *testing.T, within time.Duration, what string) {
	t.Helper()
	testkit.Eventually(t, within, what, func() bool { code, _ := d.get(t, "/ready"); return code == 200 })
}

// waitNotReady waits for /ready 503 whose full answer contains every one
// of want, checking /live on every poll.
func (d *demo) waitNotReady(t *testing.T, within time.Duration, want ...string) string {
	t.Helper()
	var body string
	testkit.Eventually(t, within, "/ready 503 naming "+strings.Join(want, ", "), func() bool {
		if code, _ := d.get(t, "/live"); code != 200 {
			t.Fatalf("/live = %d during the fault; it must stay 200", code)
		}
		var code int
		code, body = d.get(t, "/ready?full=1")
		if code != 503 {
			return false
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return true
	})
	return body
}

func TestHealthRedisUnreachable(t *testing.T) {
	srv := redistest.StartServer(t, redistest.ServerOptions{AppendOnly: true})
	d := startDemo(t, "-redis-url", "redis://"+srv.Addr+"/0", "-stall-window", "3s")
	d.waitReady(t, 30*time.Second, "ready on a real Redis")
	srv.Stop()
	body := d.waitNotReady(t, 30*time.Second)
	testkit.Eventually(t, 30*time.Second, "both consumer loops and the relay not ready", func() bool {
		_, body = d.get(t, "/ready?full=1")
		for _, loop := range []string{"rolling_service@events:{wallet}", "promotion_service@events:{wallet}", "relay/headway_outbox"} {
			if !regexp.MustCompile(`"loop/` + regexp.QuoteMeta(loop) + `": "(failing|stalled|parked|wedged)`).MatchString(body) {
				return false
			}
		}
		return true
	})
	for range 5 { // and it stays live while Redis is away
		if code, _ := d.get(t, "/live"); code != 200 {
			t.Fatalf("/live = %d while Redis is unreachable", code)
		}
	}
	srv.Restart()
	d.waitReady(t, 60*time.Second, "ready again once Redis is back")
}

func TestHealthCrashLoopingWorker(t *testing.T) {
	d := startDemo(t, "-fault-crash", "relay", "-fault-for", "8s")
	body := d.waitNotReady(t, 20*time.Second, `"service/relay": "backoff`)
	if !strings.Contains(body, "injected crash") {
		t.Fatalf("service/relay in backoff without its last error: %s", body)
	}
	// With the relay down, the outbox observer still measures the rows
	// piling up: the age of the oldest grows past a second.
	testkit.Eventually(t, 10*time.Second, "the oldest unpublished row measured while the relay is down", func() bool {
		_, s := d.get(t, "/metrics")
		return counter(s, "headway_outbox_oldest_unpublished_age_seconds") > 1
	})
	d.waitReady(t, 60*time.Second, "ready again once the worker stops crashing")
}

func TestHealthOverdueJob(t *testing.T) {
	d := startDemo(t, "-fault-job-hang", "-fault-for", "10s", "-reconcile-interval", "1s")
	d.waitNotReady(t, 20*time.Second, `"job/reconcile": "overdue`)
	d.waitReady(t, 60*time.Second, "ready again once the job runs")
}
