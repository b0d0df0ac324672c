package readiness

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	p, err := NewProbes(ProbesConfig{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	w, clk := newTestWatermark(t, "wallet")
	fresh, _ := newTestWatermark(t, "fresh")
	j, err := NewJobHealth(JobHealthConfig{Name: "prune", Interval: time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{p.AddLoop(w), p.AddLoop(fresh), p.AddJob(j)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// 2026-05-15T12:00:00Z is 1778846400.
	clk.Advance(time.Second)
	w.Progress("1-0")
	w.SetBacklog(1200)
	j.Record(nil)
	clk.Advance(time.Second)
	j.Record(errors.New("boom"))
	w.Fail(errors.New("boom"))
	clk.Advance(43 * time.Second)

	want := `
# HELP headway_loop_backlog Work known to be waiting for the loop; absent while it cannot be measured.
# TYPE headway_loop_backlog gauge
headway_loop_backlog{loop="wallet"} 1200
# HELP headway_loop_consecutive_failures Failed iterations of the loop since its last success or progress, or failed work items since its last progress, whichever is more.
# TYPE headway_loop_consecutive_failures gauge
headway_loop_consecutive_failures{loop="fresh"} 0
headway_loop_consecutive_failures{loop="wallet"} 1
# HELP headway_loop_failures_total Failed iterations and failed work items the loop reported.
# TYPE headway_loop_failures_total counter
headway_loop_failures_total{loop="fresh"} 0
headway_loop_failures_total{loop="wallet"} 1
# HELP headway_loop_last_heartbeat_timestamp_seconds Unix time of the loop's last heartbeat (any iteration); absent before the first.
# TYPE headway_loop_last_heartbeat_timestamp_seconds gauge
headway_loop_last_heartbeat_timestamp_seconds{loop="wallet"} 1.778846402e+09
# HELP headway_loop_last_progress_timestamp_seconds Unix time of the loop's last forward progress; absent before the first.
# TYPE headway_loop_last_progress_timestamp_seconds gauge
headway_loop_last_progress_timestamp_seconds{loop="wallet"} 1.778846401e+09
# HELP headway_loop_progress_total Progress reports of the loop (a batch acknowledged, a cycle published: one each, whatever its size).
# TYPE headway_loop_progress_total counter
headway_loop_progress_total{loop="fresh"} 0
headway_loop_progress_total{loop="wallet"} 1
# HELP headway_loop_ready 1 if the loop passes its readiness rules, else 0.
# TYPE headway_loop_ready gauge
headway_loop_ready{loop="fresh"} 1
headway_loop_ready{loop="wallet"} 0
# HELP headway_job_consecutive_failures Runs of the job that failed in a row.
# TYPE headway_job_consecutive_failures gauge
headway_job_consecutive_failures{job_name="prune"} 1
# HELP headway_job_interval_seconds Interval the job is meant to succeed at.
# TYPE headway_job_interval_seconds gauge
headway_job_interval_seconds{job_name="prune"} 60
# HELP headway_job_overdue_after_seconds Age of the job's last success (or of its start, before the first) past which it is overdue: (interval + slack) × tolerance.
# TYPE headway_job_overdue_after_seconds gauge
headway_job_overdue_after_seconds{job_name="prune"} 120
# HELP headway_job_last_run_timestamp_seconds Unix time the job's last run ended; absent before the first.
# TYPE headway_job_last_run_timestamp_seconds gauge
headway_job_last_run_timestamp_seconds{job_name="prune"} 1.778846402e+09
# HELP headway_job_last_success_timestamp_seconds Unix time of the job's last successful run; absent before the first.
# TYPE headway_job_last_success_timestamp_seconds gauge
headway_job_last_success_timestamp_seconds{job_name="prune"} 1.778846401e+09
# HELP headway_job_ready 1 if the job passes its readiness rules, else 0.
# TYPE headway_job_ready gauge
headway_job_ready{job_name="prune"} 1
# HELP headway_job_runs_total Runs of the job by outcome (success, failure).
# TYPE headway_job_runs_total counter
headway_job_runs_total{job_name="prune",outcome="failure"} 1
headway_job_runs_total{job_name="prune",outcome="success"} 1
`
	names := []string{
		"headway_loop_backlog", "headway_loop_consecutive_failures", "headway_loop_failures_total",
		"headway_loop_last_heartbeat_timestamp_seconds", "headway_loop_last_progress_timestamp_seconds",
		"headway_loop_progress_total", "headway_loop_ready",
		"headway_job_consecutive_failures", "headway_job_interval_seconds", "headway_job_overdue_after_seconds", "headway_job_last_run_timestamp_seconds",
		"headway_job_last_success_timestamp_seconds", "headway_job_ready", "headway_job_runs_total",
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// The status state sets: exactly one status is 1 per loop and job.
	wantStatus := map[string]string{"wallet": "stalled", "fresh": "starting"} // fresh has its own clock
	wantJob := "ok"
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "headway_loop_status", "headway_job_status":
			ones := map[string]string{}
			series := 0
			for _, m := range mf.GetMetric() {
				series++
				labels := map[string]string{}
				for _, lp := range m.GetLabel() {
					labels[lp.GetName()] = lp.GetValue()
				}
				if m.GetGauge().GetValue() == 1 {
					ones[labels["loop"]+labels["job_name"]] = labels["status"]
				}
			}
			if mf.GetName() == "headway_loop_status" {
				if series != 2*len(loopStates) || !equalMaps(ones, wantStatus) {
					t.Errorf("headway_loop_status: %d series, current %v; want %d, %v", series, ones, 2*len(loopStates), wantStatus)
				}
			} else if series != len(jobStates) || ones["prune"] != wantJob || len(ones) != 1 {
				t.Errorf("headway_job_status: %d series, current %v", series, ones)
			}
		}
	}

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
	}
}

// TestMetricsSharedRegisterer builds two Probes against one registerer: no
// error, no panic, and both sets of loops are exported.
func TestMetricsSharedRegisterer(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	for _, name := range []string{"a", "b"} {
		p, err := NewProbes(ProbesConfig{Registerer: reg})
		if err != nil {
			t.Fatalf("NewProbes #%s: %v", name, err)
		}
		w, _ := newTestWatermark(t, name)
		if err := p.AddLoop(w); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP headway_loop_ready 1 if the loop passes its readiness rules, else 0.
# TYPE headway_loop_ready gauge
headway_loop_ready{loop="a"} 1
headway_loop_ready{loop="b"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "headway_loop_ready"); err != nil {
		t.Error(err)
	}
}

// TestLoopStatusShowsAStallDuringAnAlertHold: headway_loop_status, which
// the HeadwayLoopStalled alert reads, says stalled — not alert — for a loop
// with a backlog and no progress while a legacy-event hold is active, so
// the critical alert can fire.
func TestLoopStatusShowsAStallDuringAnAlertHold(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	p, err := NewProbes(ProbesConfig{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	w, clk := newTestWatermark(t, "wallet")
	if err := p.AddLoop(w); err != nil {
		t.Fatal(err)
	}
	w.Progress("1-0")
	w.SetBacklog(1000)
	w.Alert("legacy schema_version 1 on events:{wallet}", clk.Now().Add(5*time.Minute))
	clk.Advance(45 * time.Second)
	w.Heartbeat()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	current := ""
	for _, mf := range mfs {
		if mf.GetName() != "headway_loop_status" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetGauge().GetValue() != 1 {
				continue
			}
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "status" {
					current = lp.GetValue()
				}
			}
		}
	}
	if current != "stalled" {
		t.Fatalf("headway_loop_status is %q during a stall under an alert hold, want stalled", current)
	}
}
