package brandguard

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/promutil"
)

// LegacySchemaMetric is the name the event catalog requires for the count of
// schema_version 1 entries.
const LegacySchemaMetric = "event_legacy_schema_total"

type metrics struct {
	legacy    *prometheus.CounterVec // stream, consumer
	verdicts  *prometheus.CounterVec // stream, consumer, action, reason
	mismatch  *prometheus.CounterVec // stream, consumer, mode
	producers *prometheus.CounterVec // stream
}

// newMetrics creates and registers the metrics. The producer-violation
// series of every stream of the catalog exist from the start at 0, so that
// increase() sees the first violation and the dashboard shows a flat line
// rather than no data.
func newMetrics(reg prometheus.Registerer, catalog *event.Catalog) (*metrics, error) {
	m := &metrics{
		legacy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: LegacySchemaMetric,
			Help: "Stream entries with the legacy schema_version 1, rejected.",
		}, []string{"stream", "consumer"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "headway", Subsystem: "brandguard", Name: "verdicts_total",
			Help: "Brandguard verdicts on consumed entries by action (accept, ignore, reject) and reason.",
		}, []string{"stream", "consumer", "action", "reason"}),
		mismatch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "headway", Subsystem: "brandguard", Name: "brand_mismatch_total",
			Help: "Events whose envelope brand differed from the target entity's brand, by enforcement mode.",
		}, []string{"stream", "consumer", "mode"}),
		producers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "headway", Subsystem: "brandguard", Name: "producer_violations_total",
			Help: "Outbox writes refused because the envelope brand differed from the owning row's brand.",
		}, []string{"stream"}),
	}
	var err error
	if m.legacy, err = promutil.Register(reg, m.legacy); err != nil {
		return nil, err
	}
	if m.verdicts, err = promutil.Register(reg, m.verdicts); err != nil {
		return nil, err
	}
	if m.mismatch, err = promutil.Register(reg, m.mismatch); err != nil {
		return nil, err
	}
	if m.producers, err = promutil.Register(reg, m.producers); err != nil {
		return nil, err
	}
	for i := range catalog.Streams {
		m.producers.WithLabelValues(catalog.Streams[i].Key())
	}
	return m, nil
}
