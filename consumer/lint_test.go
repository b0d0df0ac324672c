package consumer_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// The consumer's metrics, after entries of every kind went through, pass
// Prometheus's lint (names, units, help texts).
func TestMetricsLint(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := walletStream(prefix)
	h := start(t, fastConfig(rdb, stream, handlersFor(newRecorder().handle)))
	for i := range 3 {
		publish(t, rdb, stream, envelope("ok-"+strconv.Itoa(i), platform.BetSettledConfirmed, "bet-1", 3, nil))
	}
	publishRaw(t, rdb, stream, map[string]any{"event_id": "bad", "event_type": "BET_SETTLED_CONFIRMED"})
	testkit.Eventually(t, 5*time.Second, "applied and dead-lettered", func() bool { return len(h.deadLetters()) == 1 && h.pending() == 0 })
	problems, err := testutil.GatherAndLint(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
	}
}
