package outbox_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
)

// The writer's, the relay's and the observer's metrics, after rows were
// written and published, pass Prometheus's lint (names, units, help texts).
func TestMetricsLint(t *testing.T) {
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	reg := prometheus.NewPedanticRegistry()
	w, err := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	writeEvents(t, db, w, "lint", 3, 3)
	runRelay(t, outbox.RelayConfig{Pool: db.Pool, Client: rdb, Registerer: reg, PollInterval: 20 * time.Millisecond,
		InfoInterval: 20 * time.Millisecond})
	store, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: db.Pool})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.NewObserver(outbox.ObserverConfig{Store: store, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "rows published", func() bool { return count(t, db, "published_at IS NULL") == 0 })
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
	}
}
