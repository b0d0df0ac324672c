package readiness

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collector exports the metrics of every loop and job of the Probes
// attached to it, reading the watermarks at scrape time: no goroutine
// updates gauges behind the state. Probes built against one registerer
// share the collector registered first (promutil.Register returns it), and
// attach themselves to it.
type collector struct {
	mu     sync.RWMutex
	probes []*Probes

	loopProgress, loopHeartbeat, loopBacklog, loopFailures *prometheus.Desc
	loopProgressTotal, loopFailuresTotal                   *prometheus.Desc
	loopReady, loopStatus                                  *prometheus.Desc

	jobSuccess, jobRun, jobRuns, jobFailures, jobInterval *prometheus.Desc
	jobOverdueAfter, jobReady, jobStatus                  *prometheus.Desc
}

func newCollector() *collector {
	loop := []string{"loop"}
	job := []string{"job_name"}
	d := prometheus.NewDesc
	return &collector{
		loopProgress:      d("headway_loop_last_progress_timestamp_seconds", "Unix time of the loop's last forward progress; absent before the first.", loop, nil),
		loopHeartbeat:     d("headway_loop_last_heartbeat_timestamp_seconds", "Unix time of the loop's last heartbeat (any iteration); absent before the first.", loop, nil),
		loopBacklog:       d("headway_loop_backlog", "Work known to be waiting for the loop; absent while it cannot be measured.", loop, nil),
		loopFailures:      d("headway_loop_consecutive_failures", "Failed iterations of the loop since its last success or progress, or failed work items since its last progress, whichever is more.", loop, nil),
		loopProgressTotal: d("headway_loop_progress_total", "Progress reports of the loop (a batch acknowledged, a cycle published: one each, whatever its size).", loop, nil),
		loopFailuresTotal: d("headway_loop_failures_total", "Failed iterations and failed work items the loop reported.", loop, nil),
		loopReady:         d("headway_loop_ready", "1 if the loop passes its readiness rules, else 0.", loop, nil),
		loopStatus:        d("headway_loop_status", "Current status of the loop (1 for the current status, 0 for the others): starting, progressing, idle, behind, stalled, failing, alert, wedged, parked.", []string{"loop", "status"}, nil),

		jobSuccess:  d("headway_job_last_success_timestamp_seconds", "Unix time of the job's last successful run; absent before the first.", job, nil),
		jobRun:      d("headway_job_last_run_timestamp_seconds", "Unix time the job's last run ended; absent before the first.", job, nil),
		jobRuns:     d("headway_job_runs_total", "Runs of the job by outcome (success, failure).", []string{"job_name", "outcome"}, nil),
		jobFailures: d("headway_job_consecutive_failures", "Runs of the job that failed in a row.", job, nil),
		jobInterval: d("headway_job_interval_seconds", "Interval the job is meant to succeed at.", job, nil),
		jobOverdueAfter: d("headway_job_overdue_after_seconds",
			"Age of the job's last success (or of its start, before the first) past which it is overdue: (interval + slack) × tolerance.", job, nil),
		jobReady:  d("headway_job_ready", "1 if the job passes its readiness rules, else 0.", job, nil),
		jobStatus: d("headway_job_status", "Current status of the job (1 for the current status, 0 for the others): waiting, ok, overdue, failing.", []string{"job_name", "status"}, nil),
	}
}

func (c *collector) attach(p *Probes) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probes = append(c.probes, p)
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.loopProgress, c.loopHeartbeat, c.loopBacklog, c.loopFailures,
		c.loopProgressTotal, c.loopFailuresTotal, c.loopReady, c.loopStatus,
		c.jobSuccess, c.jobRun, c.jobRuns, c.jobFailures, c.jobInterval, c.jobOverdueAfter, c.jobReady, c.jobStatus,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	probes := slices.Clone(c.probes)
	c.mu.RUnlock()
	for _, p := range probes {
		for _, w := range loadSnapshot(&p.loops) {
			c.collectLoop(ch, w)
		}
		for _, j := range loadSnapshot(&p.jobs) {
			c.collectJob(ch, j)
		}
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) collectLoop(ch chan<- prometheus.Metric, w *Watermark) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	v := w.evaluate(w.now())
	if v.progress != never {
		gauge(c.loopProgress, unixSeconds(w.at(v.progress)), w.name)
	}
	if v.heartbeat != never {
		gauge(c.loopHeartbeat, unixSeconds(w.at(v.heartbeat)), w.name)
	}
	if v.backlog != backlogUnknown {
		gauge(c.loopBacklog, float64(v.backlog), w.name)
	}
	gauge(c.loopFailures, float64(max(v.failures, v.work)), w.name)
	ch <- prometheus.MustNewConstMetric(c.loopProgressTotal, prometheus.CounterValue, float64(w.progressTotal.Load()), w.name)
	ch <- prometheus.MustNewConstMetric(c.loopFailuresTotal, prometheus.CounterValue, float64(w.failuresTotal.Load()+w.workTotal.Load()), w.name)
	gauge(c.loopReady, boolFloat(v.state.Ready()), w.name)
	for _, s := range loopStates {
		gauge(c.loopStatus, boolFloat(s == v.state), w.name, s.String())
	}
}

func (c *collector) collectJob(ch chan<- prometheus.Metric, j *JobHealth) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	v := j.evaluate(j.now())
	s := j.Snapshot()
	if !s.LastSuccess.IsZero() {
		gauge(c.jobSuccess, unixSeconds(s.LastSuccess), j.name)
	}
	if !s.LastRun.IsZero() {
		gauge(c.jobRun, unixSeconds(s.LastRun), j.name)
	}
	ch <- prometheus.MustNewConstMetric(c.jobRuns, prometheus.CounterValue, float64(s.Succeeded), j.name, "success")
	ch <- prometheus.MustNewConstMetric(c.jobRuns, prometheus.CounterValue, float64(s.Failed), j.name, "failure")
	gauge(c.jobFailures, float64(v.failures), j.name)
	gauge(c.jobInterval, j.interval.Seconds(), j.name)
	gauge(c.jobOverdueAfter, j.due().Seconds(), j.name)
	gauge(c.jobReady, boolFloat(v.state.Ready()), j.name)
	for _, s := range jobStates {
		gauge(c.jobStatus, boolFloat(s == v.state), j.name, s.String())
	}
}
