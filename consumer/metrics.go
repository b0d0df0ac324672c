package consumer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/promutil"
)

// Outcomes of an entry, the outcome label of
// headway_consumer_entries_total.
const (
	OutcomeApplied      = "applied"       // handler succeeded, acknowledged
	OutcomeDuplicate    = "duplicate"     // dedup: done before, acknowledged without dispatch
	OutcomeUnhandled    = "unhandled"     // no handler for the type, acknowledged
	OutcomeIgnored      = "ignored"       // brandguard ignore (retired type), acknowledged
	OutcomeDeadLettered = "dead_lettered" // moved to the dead-letter stream
	OutcomeRetryLater   = "retry_later"   // handler failed; left pending for redelivery
	OutcomeDeferred     = "deferred"      // not run now (an earlier entry of its aggregate is pending, or dedup busy); left pending
	OutcomeLostToTrim   = "lost_to_trim"  // trimmed from the stream while pending: data loss by retention
)

var outcomes = []string{OutcomeApplied, OutcomeDuplicate, OutcomeUnhandled, OutcomeIgnored,
	OutcomeDeadLettered, OutcomeRetryLater, OutcomeDeferred, OutcomeLostToTrim}

// Dead-letter reasons beyond brandguard's.
const (
	ReasonMaxDeliveries    = "max_deliveries"    // the handler failed on the last allowed delivery
	ReasonHandlerPermanent = "handler_permanent" // the handler returned a Permanent error
)

const otherType = "other"

type metrics struct {
	entries      *prometheus.CounterVec   // stream, group, event_type, outcome
	duration     *prometheus.HistogramVec // stream, group, event_type
	deadLettered *prometheus.CounterVec   // stream, group, reason
	lost         *prometheus.CounterVec   // stream, group
	reclaimed    *prometheus.CounterVec   // stream, group
	taken        *prometheus.CounterVec   // stream, group
	givenBack    *prometheus.CounterVec   // stream, group
	retries      *prometheus.CounterVec   // stream, group
	recreated    *prometheus.CounterVec   // stream, group
	streamReset  *prometheus.CounterVec   // stream, group
	readErrors   *prometheus.CounterVec   // stream, group
	dlqFailures  *prometheus.CounterVec   // stream, group
	lagEntries   *prometheus.GaugeVec     // stream, group
	lagSeconds   *prometheus.GaugeVec
	pending      *prometheus.GaugeVec
	oldestAge    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	sg := []string{"stream", "group"}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "headway", Subsystem: "consumer", Name: name, Help: help}
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts(opts(name, help)), sg)
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), append(sg, labels...))
	}
	m := &metrics{
		entries:      counter("entries_total", "Stream entries by event type and outcome.", "event_type", "outcome"),
		deadLettered: counter("dead_lettered_total", "Entries moved to the dead-letter stream, by reason.", "reason"),
		lost:         counter("lost_to_trim_total", "Pending entries whose data was trimmed from the stream before they were processed."),
		reclaimed:    counter("reclaimed_total", "Idle pending entries claimed by this consumer."),
		taken:        counter("taken_in_flight_total", "Entries in flight here that another consumer claimed, because this process did not refresh them for ReclaimIdle (paused, or Redis unreachable): they may run twice."),
		givenBack:    counter("deliveries_given_back_total", "Deliveries returned to Redis's delivery counter because they reached no handler verdict (deferred, dedup store failed, shutting down): they do not count toward MaxDeliveries."),
		retries:      counter("handler_retries_total", "In-process handler retries."),
		recreated:    counter("group_recreated_total", "Times the consumer group (or stream) had vanished and was created again: NOGROUP on a read, or the group missing when the consumer started again."),
		streamReset:  counter("stream_reset_total", "Times the stream was found to have lost entries it had (its entries-added fell): Redis restarted without its data, failed over to a replica without its newest entries, or the key was deleted."),
		readErrors:   counter("read_errors_total", "Failed reads of the stream."),
		dlqFailures:  counter("dead_letter_failures_total", "Entries whose dead-lettering failed; they stay pending (or, when only the acknowledgement failed, are dead-lettered again)."),
		lagEntries:   gauge("lag_entries", "Entries in the stream not yet delivered to the group; -1 when unknown."),
		lagSeconds:   gauge("lag_seconds", "Age of the oldest entry not yet delivered to the group."),
		pending:      gauge("pending_entries", "Entries delivered to the group and not yet acknowledged."),
		oldestAge:    gauge("oldest_pending_age_seconds", "Age of the oldest pending entry, from its stream ID."),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "headway", Subsystem: "consumer", Name: "handler_duration_seconds",
			Help:    "Duration of handler attempts.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, append(sg, "event_type")),
	}
	var err error
	reg1 := func(c **prometheus.CounterVec) {
		if err == nil {
			*c, err = promutil.Register(reg, *c)
		}
	}
	reg2 := func(g **prometheus.GaugeVec) {
		if err == nil {
			*g, err = promutil.Register(reg, *g)
		}
	}
	for _, c := range []**prometheus.CounterVec{&m.entries, &m.deadLettered, &m.lost, &m.reclaimed, &m.taken, &m.givenBack, &m.retries, &m.recreated, &m.streamReset, &m.readErrors, &m.dlqFailures} {
		reg1(c)
	}
	for _, g := range []**prometheus.GaugeVec{&m.lagEntries, &m.lagSeconds, &m.pending, &m.oldestAge} {
		reg2(g)
	}
	if err == nil {
		m.duration, err = promutil.Register(reg, m.duration)
	}
	return m, err
}

// series holds the label children of one consumer, looked up once so the
// hot path does no label lookups.
type series struct {
	entries     map[event.Type]map[string]prometheus.Counter // type (or otherType) -> outcome
	duration    map[event.Type]prometheus.Observer
	dead        map[string]prometheus.Counter
	deadVec     *prometheus.CounterVec
	lost        prometheus.Counter
	reclaimed   prometheus.Counter
	taken       prometheus.Counter
	givenBack   prometheus.Counter
	retries     prometheus.Counter
	recreated   prometheus.Counter
	streamReset prometheus.Counter
	readErrs    prometheus.Counter
	dlqFailures prometheus.Counter
	lag         prometheus.Gauge
	lagSec      prometheus.Gauge
	pending     prometheus.Gauge
	oldest      prometheus.Gauge
}

func newSeries(m *metrics, stream, group string, types []event.Type) *series {
	s := &series{
		entries:     map[event.Type]map[string]prometheus.Counter{},
		duration:    map[event.Type]prometheus.Observer{},
		dead:        map[string]prometheus.Counter{},
		deadVec:     m.deadLettered.MustCurryWith(prometheus.Labels{"stream": stream, "group": group}),
		lost:        m.lost.WithLabelValues(stream, group),
		reclaimed:   m.reclaimed.WithLabelValues(stream, group),
		taken:       m.taken.WithLabelValues(stream, group),
		givenBack:   m.givenBack.WithLabelValues(stream, group),
		retries:     m.retries.WithLabelValues(stream, group),
		recreated:   m.recreated.WithLabelValues(stream, group),
		streamReset: m.streamReset.WithLabelValues(stream, group),
		readErrs:    m.readErrors.WithLabelValues(stream, group),
		dlqFailures: m.dlqFailures.WithLabelValues(stream, group),
		lag:         m.lagEntries.WithLabelValues(stream, group),
		lagSec:      m.lagSeconds.WithLabelValues(stream, group),
		pending:     m.pending.WithLabelValues(stream, group),
		oldest:      m.oldestAge.WithLabelValues(stream, group),
	}
	for _, r := range brandguard.Reasons {
		s.dead[string(r)] = s.deadVec.WithLabelValues(string(r))
	}
	for _, r := range []string{ReasonMaxDeliveries, ReasonHandlerPermanent} {
		s.dead[r] = s.deadVec.WithLabelValues(r)
	}
	for _, t := range append(types, otherType) {
		byOutcome := make(map[string]prometheus.Counter, len(outcomes))
		for _, o := range outcomes {
			byOutcome[o] = m.entries.WithLabelValues(stream, group, string(t), o)
		}
		s.entries[t] = byOutcome
		s.duration[t] = m.duration.WithLabelValues(stream, group, string(t))
	}
	return s
}

func (s *series) entry(t event.Type, outcome string) prometheus.Counter {
	byOutcome, ok := s.entries[t]
	if !ok {
		byOutcome = s.entries[otherType]
	}
	return byOutcome[outcome]
}

func (s *series) observe(t event.Type) prometheus.Observer {
	if o, ok := s.duration[t]; ok {
		return o
	}
	return s.duration[otherType]
}

// deadLetter returns the counter of a reason; reasons are a fixed set
// (brandguard's and this package's), so the map stays small.
func (s *series) deadLetter(reason string) prometheus.Counter {
	if c, ok := s.dead[reason]; ok {
		return c
	}
	return s.deadVec.WithLabelValues(reason)
}
