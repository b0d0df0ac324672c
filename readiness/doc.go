// Package readiness judges headway's loops by forward progress, not by
// being alive (ADR-003), and serves the verdicts as Kubernetes probes.
//
// A loop holds a [Watermark] and reports into it; a scheduled job has a
// [JobHealth]; the [Probes] read both (and any custom check, such as the
// supervisor's) to answer /live and /ready, and export their metrics.
// readiness is a leaf package: it knows nothing of Redis, PostgreSQL or the
// loops themselves.
//
// # Reporting
//
// A loop calls, from its own goroutine or several:
//
//	wm.Heartbeat()        // every iteration, even a failed or empty one
//	wm.Progress(id)       // position advanced / unit of work finished
//	wm.SetBacklog(n)      // lag + pending, unpublished rows, … (-1: unknown)
//	wm.BacklogUnknown()   // the measurement failed
//	wm.SetLag(d)          // age of the oldest waiting work, for display (-1: unknown)
//	wm.Succeed()          // an iteration worked but moved nothing
//	wm.Fail(err)          // an iteration failed
//	wm.Alert(reason, t)   // another component holds the loop not ready until t
//
// and its supervisor, which alone knows when the loop is not running:
//
//	wm.Park(reason)       // in restart backoff, or stopped for good
//	wm.Unpark()           // running again
//
// Updates take no lock and do not allocate (Fail boxes its error): a
// Watermark can sit in the hottest loop. The position text is kept in a
// fixed buffer of [MaxPositionLen] bytes behind an atomic sequence lock, so
// Progress copies it without allocating; readers ([Watermark.Snapshot])
// allocate.
//
// # Rules
//
// [Watermark.StatusAt] applies, in order (see its documentation for the
// details): parked (its supervisor holds it: not ready, but live), wedged
// (no heartbeat within the liveness window: not live), failing
// (consecutive failed iterations at the bound, or failed work items at the
// bound with no progress since: [Watermark.FailWork]), stalled (backlog
// present or
// unknown, no progress within the stall window: not ready), alert (held by
// [Watermark.Alert]: not ready, but never hiding a failing or stalled
// loop), progressing (behind when the backlog also grew across the whole
// window: a warning), idle (backlog known to be zero: ready however old
// the last progress, Burrow's rule), and starting. A loop's state is the
// worst of its conditions. Each [Status] carries a reason a
// person can act on:
//
//	stalled: backlog 1200, no progress for 45s (window 30s)
//
// Two things are shown in the reason without changing the state: work
// items waiting for a retry ([Watermark.SetRetrying]: "retrying 1"), which
// are not backlog, and a notice ([Watermark.Notice]: "; notice: …"), which
// /ready?full=1 also lists as "notice/loop/<name>" while the loop's check
// passes. docs/health.md lists what every situation shows.
//
// Windows and bounds come from [WatermarkConfig]; the defaults are
// [DefaultStallWindow], [DefaultLivenessWindow] and [DefaultFailureBound].
// The clock is injectable (WatermarkConfig.Now), so every rule can be
// tested without sleeping.
//
// # Parking
//
// A loop in its supervisor's restart backoff, or removed for a permanent
// error, does not run, so it cannot heartbeat: judged by the liveness
// window alone it would turn wedged, fail /live, and Kubernetes would
// restart the pod — a permanent stop would become a crash loop, and a long
// backoff during a Redis outage would restart every pod, which liveness
// must never do. So the supervisor parks the loop's watermark
// ([Watermark.Park]) while it holds the loop: the loop is [StateParked],
// not ready with the reason ("parked: service in backoff", "parked: service
// stopped: <error>"), and left out of "loops/live". [Watermark.Unpark]
// restarts the liveness window when the loop runs again. Park and Unpark
// are lock-free like every update; package supervisor calls them for every
// service that reports a watermark.
//
// # Jobs
//
// A [JobHealth] is overdue when its last success is older than
// [JobHealth.OverdueAfter], which allows for how much a healthy schedule
// may add to the interval (jitter and run time), so a job that misses no
// run never flaps; it is failing when its last runs
// failed ([JobHealthConfig]). A deferred job's clock starts when its runner first
// runs ([JobHealth.Start]); before that it is waiting, which is ready. The error
// of the last failed run stays in the reason (ADR-004: never swallowed).
//
// # Probes
//
// [Probes] serves GET /live and GET /ready with
// github.com/heptiolabs/healthcheck. /live runs only liveness checks — the
// process's own loops, never a dependency — so a Redis or PostgreSQL outage
// makes pods unready, not restarted. /ready runs every check; ?full=1 adds
// each check's reason as JSON:
//
//	{
//	    "job/prune": "OK",
//	    "loop/wallet": "stalled: backlog 1200, no progress for 45s (window 30s)",
//	    "loops/live": "OK",
//	    "service/relay": "OK"
//	}
//
// Every check reads atomics only: the handler runs all checks on every
// request. Adding a check name twice returns [ErrDuplicateCheck] instead of
// the library's silent overwrite.
//
// # Metrics
//
// With ProbesConfig.Registerer set, a collector reads every loop and job at
// scrape time (no goroutine updates gauges): headway_loop_* (last progress
// and heartbeat timestamps, backlog, consecutive failures, progress and
// failure counters, ready, status) and headway_job_* (last success and run
// timestamps, runs by outcome, consecutive failures, interval, overdue
// threshold, ready, status). See docs/metrics.md.
package readiness
