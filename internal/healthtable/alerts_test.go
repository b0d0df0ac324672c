package healthtable

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// alertRule is one shipped alert: its severity, for: duration, expression,
// and the condition the tests evaluate for it.
type alertRule struct {
	severity, forDur, expr string
	cond                   condition
}

func (a alertRule) fires(mfs []*dto.MetricFamily) bool { return a.cond.holds(mfs) }

// condition is an alert's expression reduced to what one process's metrics
// show at one moment: a series of metric with the labels given (a value
// starting with "!" means "not that value", "~" "matching that regular
// expression", "!~" "not matching it") whose value passes test, and
// no series of unless passing its test. Counters start at zero in each
// scenario, so increase(x[15m]) > 0 is x > 0, and max_over_time(x[5m]) is
// x now.
type condition struct {
	metric string
	labels map[string]string
	test   func(float64) bool
	unless *condition
	// fragment must appear in the alert's expression: the condition is
	// tied to the rule it reduces.
	fragment string
}

func (c condition) holds(mfs []*dto.MetricFamily) bool {
	if c.unless != nil && c.unless.holds(mfs) {
		return false
	}
	for _, mf := range mfs {
		if mf.GetName() != c.metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, c.labels) && c.test(value(m)) {
				return true
			}
		}
	}
	return false
}

func matches(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		got := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == k {
				got = l.GetValue()
			}
		}
		if re, ok := strings.CutPrefix(v, "!~"); ok {
			if regexp.MustCompile("^(?:" + re + ")$").MatchString(got) {
				return false
			}
		} else if re, ok := strings.CutPrefix(v, "~"); ok {
			if !regexp.MustCompile("^(?:" + re + ")$").MatchString(got) {
				return false
			}
		} else if neg, ok := strings.CutPrefix(v, "!"); ok {
			if got == neg {
				return false
			}
		} else if got != v {
			return false
		}
	}
	return true
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

func one(v float64) bool { return v == 1 }

// staleBy holds for a Unix timestamp more than s seconds in the past.
func staleBy(s float64) func(float64) bool {
	return func(v float64) bool { return float64(time.Now().Unix())-v > s }
}
func positive(v float64) bool { return v > 0 }
func above(n float64) func(float64) bool {
	return func(v float64) bool { return v > n }
}

// conditions reduces every shipped alert; TestEveryAlertHasACondition
// keeps it in step with the rules file.
var conditions = map[string]condition{
	"HeadwayLoopStalled": {metric: "headway_loop_status", labels: map[string]string{"status": "stalled"}, test: one,
		fragment: `headway_loop_status{status="stalled"} == 1`},
	"HeadwayLoopFailing": {metric: "headway_loop_status", labels: map[string]string{"status": "failing", "loop": "!~relay/.+"}, test: one,
		fragment: `headway_loop_status{status="failing", loop!~"relay/.+"} == 1`},
	"HeadwayLoopBehind": {metric: "headway_loop_status", labels: map[string]string{"status": "behind"}, test: one,
		fragment: `headway_loop_status{status="behind"} == 1`},
	"HeadwayConsumerLagTooOld": {metric: "headway_consumer_lag_seconds", test: above(300),
		fragment: `(headway_consumer_lag_seconds) > 300`},
	"HeadwayConsumerDeadLetters": {metric: "headway_consumer_dead_lettered_total", labels: map[string]string{"reason": "!legacy_schema"}, test: positive,
		fragment: `increase(headway_consumer_dead_lettered_total{reason!="legacy_schema"}[15m])) > 0`},
	"HeadwayConsumerDeadLetterFailing": {metric: "headway_consumer_dead_letter_failures_total", test: positive,
		fragment: `increase(headway_consumer_dead_letter_failures_total[15m])) > 0`},
	"HeadwayConsumerEntriesTaken": {metric: "headway_consumer_taken_in_flight_total", test: positive,
		fragment: `increase(headway_consumer_taken_in_flight_total[15m])) > 0`},
	"HeadwayConsumerLostToTrim": {metric: "headway_consumer_lost_to_trim_total", test: positive,
		fragment: `increase(headway_consumer_lost_to_trim_total[15m])) > 0`},
	"HeadwayConsumerGroupRecreated": {metric: "headway_consumer_group_recreated_total", test: positive,
		fragment: `increase(headway_consumer_group_recreated_total[15m])) > 0`},
	"HeadwayConsumerStreamReset": {metric: "headway_consumer_stream_reset_total", test: positive,
		fragment: `increase(headway_consumer_stream_reset_total[15m])) > 0`},
	"HeadwayStreamOverBound": {metric: "headway_retention_over_bound", labels: map[string]string{"kind": "stream"}, test: one,
		fragment: `(headway_retention_over_bound{kind="stream"}) == 1`},
	"HeadwayStreamTrimmedUnread": {metric: "headway_retention_trimmed_unread_entries_total", test: positive,
		fragment: `increase(headway_retention_trimmed_unread_entries_total[15m])) > 0`},
	"HeadwayDeadLettersOverBound": {metric: "headway_retention_over_bound", labels: map[string]string{"kind": "dead_letter"}, test: one,
		fragment: `(headway_retention_over_bound{kind="dead_letter"}) == 1`},
	"HeadwayLegacySchemaEvents": {metric: "event_legacy_schema_total", test: positive,
		fragment: `increase(event_legacy_schema_total[15m])) > 0`},
	"HeadwayBrandMismatchObserved": {metric: "headway_brandguard_brand_mismatch_total", labels: map[string]string{"mode": "observe"}, test: positive,
		fragment: `increase(headway_brandguard_brand_mismatch_total{mode="observe"}[15m])) > 0`},
	"HeadwayProducerBrandViolations": {metric: "headway_brandguard_producer_violations_total", test: positive,
		fragment: `increase(headway_brandguard_producer_violations_total[15m])`},
	"HeadwayOutboxBacklogTooOld": {metric: "headway_outbox_oldest_unpublished_age_seconds", test: above(300),
		fragment: `(headway_outbox_oldest_unpublished_age_seconds) > 300`},
	"HeadwayOutboxRelayFailing": {metric: "headway_loop_status", labels: map[string]string{"status": "failing", "loop": "~relay/.+"}, test: one,
		fragment: `headway_loop_status{status="failing", loop=~"relay/.+"} == 1`},
	// Stale only when nothing measures: in one scenario's lifetime the
	// relay or an observer measures, or the gauge is absent.
	"HeadwayOutboxBacklogUnmeasured": {metric: "headway_outbox_backlog_measured_timestamp_seconds", test: staleBy(120),
		fragment: `time() - max by (namespace, job, table) (headway_outbox_backlog_measured_timestamp_seconds) > 120`},
	"HeadwayOutboxPublishFailures": {metric: "headway_outbox_publish_failures_total", test: positive,
		fragment: `increase(headway_outbox_publish_failures_total[10m]) > 0`},
	"HeadwayOutboxRowsParked": {metric: "headway_outbox_parked_rows", test: positive,
		fragment: `(headway_outbox_parked_rows) > 0`},
	// The second half (not ready at some moment of the last 2m) holds
	// whenever the first does now: a worker in backoff is not ready.
	"HeadwayWorkerBackoff": {metric: "headway_supervisor_service_status", labels: map[string]string{"status": "backoff"}, test: one,
		fragment: `max_over_time(headway_supervisor_service_status{status="backoff"}[5m]) == 1
and ignoring (status)
min_over_time(headway_supervisor_service_ready[2m]) == 0`},
	"HeadwayWorkerStopped": {metric: "headway_supervisor_service_status", labels: map[string]string{"status": "stopped"}, test: one,
		fragment: `headway_supervisor_service_status{status="stopped"} == 1`},
	// The first half (time() - last success > overdue after) is the job's
	// own overdue rule, which headway_job_status reports too; a failing
	// job is left to HeadwayJobFailing (the status shows one state).
	"HeadwayJobOverdue": {metric: "headway_job_status", labels: map[string]string{"status": "overdue"}, test: one,
		fragment: `max without (status) (headway_job_status{status="overdue"} == 1)
)
unless on (namespace, job, pod, instance, job_name)
(headway_job_status{status="failing"} == 1)`},
	"HeadwayJobFailing": {metric: "headway_job_status", labels: map[string]string{"status": "failing"}, test: one,
		fragment: `headway_job_status{status="failing"} == 1`},
}

const rulesPath = "../../deploy/prometheus/headway-alerts.yml"

var ruleLine = regexp.MustCompile(`^\s*(- alert|expr|for|severity):\s*(.*)$`)

// readAlertRules reads the name, expression, for: and severity of every
// alert in the shipped rules, with its condition.
func readAlertRules(t *testing.T) map[string]alertRule {
	t.Helper()
	f, err := os.Open(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules := map[string]alertRule{}
	var name string
	var cur alertRule
	inExpr := false
	flush := func() {
		if name != "" {
			cur.expr = strings.TrimSpace(cur.expr)
			rules[name] = cur
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		m := ruleLine.FindStringSubmatch(line)
		if m == nil {
			if inExpr && strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#") {
				cur.expr += "\n" + strings.TrimSpace(line)
			}
			continue
		}
		inExpr = false
		switch m[1] {
		case "- alert":
			flush()
			name, cur = m[2], alertRule{}
		case "expr":
			if m[2] == ">-" {
				inExpr = true
			} else {
				cur.expr = m[2]
			}
		case "for":
			cur.forDur = m[2]
		case "severity":
			cur.severity = m[2]
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for name, r := range rules {
		c, ok := conditions[name]
		if !ok {
			t.Fatalf("alert %s has no condition in internal/healthtable: add one", name)
		}
		if !strings.Contains(r.expr, c.fragment) {
			t.Fatalf("alert %s: its expression changed, update its condition:\n%s", name, r.expr)
		}
		r.cond = c
		rules[name] = r
	}
	return rules
}

// TestEveryAlertHasACondition: the conditions follow the rules file.
func TestEveryAlertHasACondition(t *testing.T) {
	rules := readAlertRules(t)
	for name := range conditions {
		if _, ok := rules[name]; !ok {
			t.Errorf("condition for %s, which the rules file does not ship", name)
		}
	}
	if len(rules) < 15 {
		t.Errorf("read %d alerts from the rules file; the reader is broken", len(rules))
	}
}
