package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/retention"
)

// config is everything the demo can be told, from flags and environment.
type config struct {
	listen      string
	drainDelay  time.Duration // /ready fails this long before the workers stop
	redisURL    string        // empty: embedded miniredis
	databaseURL string        // empty: embedded SQLite
	dataDir     string        // where the embedded SQLite file goes; empty: a temporary directory
	mode        brandguard.Mode
	rate        float64 // business operations per second
	players     int     // players per brand
	title       string
	stallWindow time.Duration
	reclaimIdle time.Duration // the consumers' ReclaimIdle
	batchSize   int           // the consumers' BatchSize; 0: headway's default
	reconcile   time.Duration // job interval
	grace       time.Duration // how long projections may disagree before the job fails
	consumer    string        // consumer name; empty: hostname

	// Retention of the wallet stream and its dead letters (retention.Keeper).
	keepFor, keepDeadFor      time.Duration // MinAge of the stream, of the dead letters
	maxLength, maxDeadLetters int64         // MaxLength of each: over it, HeadwayStreamOverBound / HeadwayDeadLettersOverBound
	trimEvery                 time.Duration // the retention jobs' interval

	// Tracing: spans to stdout, and/or to the OTLP/HTTP endpoint of
	// OTEL_EXPORTER_OTLP_ENDPOINT (or …_TRACES_ENDPOINT).
	traceStdout bool
	otlp        string

	// Faults: shares of produced operations, each in [0, 1].
	legacy, malformed, mismatch, fail float64
	producerViolation                 float64       // share of operations followed by an outbox write the writer refuses
	hang                              string        // "", "rolling" or "promotion"
	slow                              string        // "", "rolling" or "promotion": the consumer whose handler is slowed by slowBy
	slowBy                            time.Duration // how long each handler call of slow takes at least
	hostile                           bool
	crash                             []string      // workers whose Serve fails at once while faults last
	stop                              string        // worker whose Serve fails permanently, so it is stopped for good
	jobHang                           bool          // the reconciliation job ignores its context and hangs while faults last
	faultFor                          time.Duration // how long -fault-crash and -fault-job-hang last; 0: for ever
	alertPolicy                       consumer.AlertPolicy
	alertWindow                       time.Duration
}

// workerNames are the supervised workers, the values -fault-crash and
// -fault-stop accept.
var workerNames = []string{"wallet-producer", "relay", "outbox-observer", "rolling", "promotion"}

// consumerNames are the values -hang accepts.
var consumerNames = []string{"rolling", "promotion"}

func parseConfig(args []string, lookup func(string) (string, bool), stderr io.Writer) (config, error) {
	env := func(k string) string { v, _ := lookup(k); return v }
	c := config{}
	fs := flag.NewFlagSet("demo-consumer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `demo-consumer runs headway's whole transport path in one process: a wallet
producer writing business rows and outbox rows in one transaction, the outbox
relay, a rolling and a promotion consumer with projections, and a
reconciliation job, supervised, with /live, /ready, /metrics and /status.

With no REDIS_URL and no DATABASE_URL it needs nothing installed: Redis is
embedded (miniredis) and the outbox is an embedded SQLite file.

Usage: demo-consumer [flags]

Environment:
  REDIS_URL                 redis://host:port/db of a real Redis (default: embedded)
  DATABASE_URL              postgres://… of a real PostgreSQL (default: embedded SQLite)
  MULTI_BRAND_ENFORCEMENT   enforce (default) or observe
  OTEL_EXPORTER_OTLP_ENDPOINT  http://collector:4318: export spans over OTLP/HTTP (the
                            exporter reads the other OTEL_EXPORTER_OTLP_* variables)

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "`address` of the HTTP server (/live, /ready, /metrics, /status)")
	fs.DurationVar(&c.drainDelay, "drain-delay", 0, "on SIGTERM, how long /ready fails before the workers stop (0: none; in Kubernetes, a few seconds, so the endpoints drop the pod first)")
	fs.StringVar(&c.redisURL, "redis-url", env("REDIS_URL"), "Redis `URL`; empty runs an embedded Redis (env REDIS_URL)")
	fs.StringVar(&c.databaseURL, "database-url", env("DATABASE_URL"), "PostgreSQL `URL`; empty uses an embedded SQLite outbox (env DATABASE_URL)")
	fs.StringVar(&c.dataDir, "data-dir", "", "`directory` of the embedded SQLite file (default: a temporary directory, removed at exit)")
	fs.Float64Var(&c.rate, "rate", 50, "business operations per `second` by the wallet producer")
	fs.IntVar(&c.players, "players", 20, "players per brand (three brands)")
	fs.StringVar(&c.title, "title", "headway demo", "`title` of the status page")
	fs.DurationVar(&c.stallWindow, "stall-window", 30*time.Second, "how long a loop with backlog may go without progress before it is not ready")
	fs.IntVar(&c.batchSize, "batch-size", 0, "`entries` per read of each consumer (0: headway's default, 500)")
	fs.DurationVar(&c.reclaimIdle, "reclaim-idle", 30*time.Second, "how long an entry stays pending and idle before another consumer of the group claims it (above the handlers' 5s timeout)")
	policy := fs.String("alert-policy", string(consumer.AlertNotice), "how the consumers surface a legacy v1 event or a recreated group: `notice` (shown, still ready) or hold (not ready for -alert-window)")
	fs.DurationVar(&c.alertWindow, "alert-window", consumer.DefaultAlertWindow, "how long the notice or hold of -alert-policy lasts")
	fs.DurationVar(&c.reconcile, "reconcile-interval", 10*time.Second, "interval of the reconciliation job")
	fs.DurationVar(&c.grace, "reconcile-grace", 30*time.Second, "how long the projections may disagree before reconciliation fails")
	fs.DurationVar(&c.keepFor, "retention-min-age", 10*time.Minute, "retention keeps wallet entries at least this long after every group acknowledged them")
	fs.Int64Var(&c.maxLength, "retention-max-length", 100_000, "`entries` the wallet stream may hold before it is reported over its bound (a group holds it back)")
	fs.DurationVar(&c.keepDeadFor, "dead-letter-min-age", 24*time.Hour, "retention keeps dead letters this long")
	fs.Int64Var(&c.maxDeadLetters, "dead-letter-max-length", 1000, "dead `letters` the dead-letter stream may hold before it is reported over its bound")
	fs.DurationVar(&c.trimEvery, "retention-interval", retention.DefaultInterval, "interval of the retention jobs")
	fs.BoolVar(&c.traceStdout, "trace-stdout", false, "write OpenTelemetry spans to stdout (JSON, one object per span)")
	fs.StringVar(&c.consumer, "consumer", "", "consumer `name` in both groups (default: the hostname)")
	fs.Float64Var(&c.legacy, "fault-legacy", 0, "`share` of operations followed by a legacy schema_version 1 entry")
	fs.Float64Var(&c.malformed, "fault-malformed", 0, "`share` of operations followed by a malformed entry")
	fs.Float64Var(&c.mismatch, "fault-mismatch", 0, "`share` of operations followed by an event whose envelope brand is not its player's")
	fs.Float64Var(&c.producerViolation, "fault-producer-violation", 0, "`share` of operations followed by a deposit whose event names another brand than its player's: the outbox writer refuses it, counts it (headway_brandguard_producer_violations_total) and its transaction is rolled back")
	fs.Float64Var(&c.fail, "fault-fail", 0, "`share` of handler attempts that fail (retried, then left pending)")
	fs.StringVar(&c.hang, "fault-hang", "", "`consumer` (rolling or promotion) whose handler hangs until its timeout")
	fs.BoolVar(&c.hostile, "fault-hostile", false, "inject one legacy entry whose event type is markup, to show /status escapes it")
	slow := fs.String("fault-slow", "", "`consumer=duration` (rolling or promotion): each handler call of that consumer takes at least the duration, so it falls behind the producer")
	crash := fs.String("fault-crash", "", "`workers` (comma-separated: wallet-producer, relay, outbox-observer, rolling, promotion) whose Serve fails at once, so they crash-loop into backoff")
	fs.StringVar(&c.stop, "fault-stop", "", "`worker` (wallet-producer, relay, outbox-observer, rolling or promotion) whose Serve fails with a permanent error (suture.ErrDoNotRestart), so the supervisor stops it for good")
	fs.BoolVar(&c.jobHang, "fault-job-hang", false, "the reconciliation job hangs, ignoring its context, so it becomes overdue (for ever: shutdown then waits out the stop timeout)")
	fs.DurationVar(&c.faultFor, "fault-for", 0, "how long -fault-crash and -fault-job-hang last from start; 0: for ever")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	c.otlp = cmp.Or(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), env("OTEL_EXPORTER_OTLP_ENDPOINT"))
	var err error
	if c.mode, err = brandguard.ModeFromEnv(lookup); err != nil {
		return c, err
	}
	var errs []error
	for name, v := range map[string]float64{"-fault-legacy": c.legacy, "-fault-malformed": c.malformed,
		"-fault-mismatch": c.mismatch, "-fault-fail": c.fail, "-fault-producer-violation": c.producerViolation} {
		if v < 0 || v > 1 {
			errs = append(errs, fmt.Errorf("%s %v: a share must be between 0 and 1", name, v))
		}
	}
	if c.rate <= 0 || c.rate > 10000 {
		errs = append(errs, fmt.Errorf("-rate %v: must be above 0 and at most 10000", c.rate))
	}
	if c.players < 1 {
		errs = append(errs, fmt.Errorf("-players %d: must be at least 1", c.players))
	}
	if c.hang != "" && c.hang != consumerNames[0] && c.hang != consumerNames[1] {
		errs = append(errs, fmt.Errorf("-fault-hang %q: must be rolling or promotion", c.hang))
	}
	if *crash != "" {
		c.crash = strings.Split(*crash, ",")
	}
	for _, w := range c.crash {
		if !slices.Contains(workerNames, w) {
			errs = append(errs, fmt.Errorf("-fault-crash %q: each must be one of %s", w, strings.Join(workerNames, ", ")))
		}
	}
	if c.stop != "" && !slices.Contains(workerNames, c.stop) {
		errs = append(errs, fmt.Errorf("-fault-stop %q: must be one of %s", c.stop, strings.Join(workerNames, ", ")))
	}
	if c.stop != "" && slices.Contains(c.crash, c.stop) {
		errs = append(errs, fmt.Errorf("-fault-crash and -fault-stop both name %s: pick one", c.stop))
	}
	if *slow != "" {
		name, d, _ := strings.Cut(*slow, "=")
		var err error
		c.slowBy, err = time.ParseDuration(d)
		if !slices.Contains(consumerNames, name) || err != nil || c.slowBy <= 0 {
			errs = append(errs, fmt.Errorf("-fault-slow %q: must be rolling=D or promotion=D with a positive duration D", *slow))
		} else {
			c.slow = name
		}
	}
	c.alertPolicy = consumer.AlertPolicy(*policy)
	if c.alertPolicy != consumer.AlertNotice && c.alertPolicy != consumer.AlertHold {
		errs = append(errs, fmt.Errorf("-alert-policy %q: must be notice or hold", *policy))
	}
	if c.alertWindow <= 0 {
		errs = append(errs, errors.New("-alert-window must be positive"))
	}
	if c.faultFor < 0 {
		errs = append(errs, errors.New("-fault-for must not be negative"))
	}
	if c.reclaimIdle <= 5*time.Second {
		errs = append(errs, errors.New("-reclaim-idle must exceed the handlers' 5s timeout"))
	}
	if c.drainDelay < 0 {
		errs = append(errs, errors.New("-drain-delay must not be negative"))
	}
	if c.stallWindow <= 0 || c.reconcile <= 0 || c.grace <= 0 {
		errs = append(errs, errors.New("-stall-window, -reconcile-interval and -reconcile-grace must be positive"))
	}
	if c.batchSize < 0 {
		errs = append(errs, errors.New("-batch-size must not be negative"))
	}
	if c.keepFor <= 0 || c.keepDeadFor <= 0 || c.maxLength <= 0 || c.maxDeadLetters <= 0 || c.trimEvery <= 0 {
		errs = append(errs, errors.New("-retention-min-age, -retention-max-length, -dead-letter-min-age, -dead-letter-max-length and -retention-interval must be positive"))
	}
	return c, errors.Join(errs...)
}
