package outbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/platform"
)

// gaugeOf returns the value of the gauge name in reg, or false when absent.
func gaugeOf(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return gaugeValue(mf.GetMetric()[0]), true
		}
	}
	return 0, false
}

func gaugeValue(m *dto.Metric) float64 { return m.GetGauge().GetValue() }

// With no relay running (it is down, or crash-looping), an Observer
// measures the backlog: the rows waiting and the age of the oldest, so
// HeadwayOutboxBacklogTooOld can fire. It shares its gauges with a relay
// of the same table on the same registerer.
func TestObserverMeasuresWithoutARelay(t *testing.T) {
	db := migrated(t)
	rdb, prefix := redistest.Client(t)
	w, _ := outbox.NewWriter(outbox.WriterConfig{Catalog: platform.Catalog(), KeyPrefix: prefix})
	writeEvents(t, db, w, "waiting", 7, 3)
	store, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: db.Pool})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	obs, err := outbox.NewObserver(outbox.ObserverConfig{Store: store, Interval: 20 * time.Millisecond, Registerer: reg, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	// A relay built against the same registerer shares the gauges (it is
	// not started: it is "down").
	if _, err := outbox.NewRelay(outbox.RelayConfig{Pool: db.Pool, Client: rdb, Registerer: reg, Logger: quiet()}); err != nil {
		t.Fatalf("relay beside an observer on one registerer: %v", err)
	}
	if _, ok := gaugeOf(t, reg, "headway_outbox_backlog_measured_timestamp_seconds"); !ok {
		t.Fatal("no measured timestamp gauge")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- obs.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v", err)
		}
	}()
	start := time.Now()
	testkit.Eventually(t, 5*time.Second, "the backlog measured", func() bool {
		rows, _ := gaugeOf(t, reg, "headway_outbox_backlog_rows")
		at, _ := gaugeOf(t, reg, "headway_outbox_backlog_measured_timestamp_seconds")
		return rows == 7 && at >= float64(start.Unix())
	})
	first, _ := gaugeOf(t, reg, "headway_outbox_oldest_unpublished_age_seconds")
	testkit.Eventually(t, 5*time.Second, "the oldest row ages", func() bool {
		age, _ := gaugeOf(t, reg, "headway_outbox_oldest_unpublished_age_seconds")
		return age > first && age > 0
	})
}

func TestObserverConfig(t *testing.T) {
	if _, err := outbox.NewObserver(outbox.ObserverConfig{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("no store: %v", err)
	}
}
