// Package drill is the alert drill: it runs the production alert rules
// (deploy/prometheus/headway-alerts.yml) in a real Prometheus against the
// demo (cmd/demo-consumer), injects one fault at a time, and measures which
// alerts fire, how long they take to fire, and how long they take to
// resolve once the fault is over.
//
// # Running it
//
// The drill is a test behind an opt-in, so that go test ./... stays fast:
//
//	go test -count=1 -v ./deploy/drill -drill
//	go test -count=1 -v ./deploy/drill -drill -drill.report drill-report.md
//	HEADWAY_DRILL=1 go test -count=1 -v ./deploy/drill -run 'TestDrill/Redis'
//
// It needs prometheus, redis-server and the Go toolchain in PATH, and takes
// about five to six minutes on two cores. Each case prints
// "fault → alerts fired → time to fire → time to resolve"; -drill.report
// writes the same as a markdown table (a relative path is taken from the
// repository root).
//
// # Time scale
//
// Production rules wait minutes. The drill divides every duration that
// decides how long an alert takes by one factor S (-drill.scale, default
// 60), with a floor of 2s so that a rule still sees two scrapes: the value
// of each `for:`, and inside each `expr:` every range `[d]`, subquery
// `[d:r]` and `offset d` ([ScaleRules]). With S = 60, 15m becomes 15s, 10m
// 10s, 5m 5s, 2m and 1m 2s. Nothing else in the rules changes; the rules
// file is read when the drill starts, so the drill always tests the rules
// as they are. Prometheus scrapes and evaluates every second.
//
// The demo's own windows are divided by S with the same floor: the stall
// window (30s → 2s), the reconciliation interval (10s → 2s) and grace (30s
// → 2s), and the alert window (5m → 5s). What the drill cannot scale is
// compiled into the demo and the library: handler and operation timeouts,
// failure bounds, the supervisor's backoff (15s), ReclaimIdle. Each case
// therefore has a budget of its production time to page ÷ S, plus the
// fixed time the demo needs, plus slack for scraping and evaluation.
// Thresholds in seconds (a lag or backlog age over 300, a measurement
// older than 120) are durations too and are divided likewise.
//
// # Cases
//
// The cases are a table in drill_test.go: the fault, the alerts the runbook
// (docs/operations.md, docs/health.md) says it pages with, and how the
// fault is injected and ended. A case passes when its expected alerts
// fire together within its budget, no other alert fires on the way or
// beside them (except ones its setup is known to raise), and every alert
// resolves once the fault is over. Mismatches are reported per case; the drill goes on
// to the next.
package drill
