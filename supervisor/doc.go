// Package supervisor runs headway's long-running loops and scheduled jobs
// under a github.com/thejerf/suture/v4 tree, and turns what suture does to
// them — restarts, backoff, permanent removal, stop timeouts — into logs,
// metrics and readiness.
//
// # The tree
//
// A [Tree] has a root supervisor and one child supervisor per worker:
//
//	probes, _ := readiness.NewProbes(readiness.ProbesConfig{Registerer: reg})
//	tree, err := supervisor.New(supervisor.Config{Logger: log, Registerer: reg, Probes: probes})
//	_ = tree.Add("relay", relay)                      // any suture.Service
//	_, _ = tree.AddJob(supervisor.JobConfig{Name: "outbox-prune", Interval: time.Hour, Run: prune})
//	err = tree.Serve(ctx)                             // until ctx is cancelled
//
// suture backs off a whole supervisor when its failures pass a threshold;
// a child supervisor per worker makes that backoff per worker, so one
// failing consumer does not pause the relay.
//
// # Events
//
// suture has no query API, so the tree follows its events. Every child
// supervisor shares the root's EventHook (suture copies it when a child is
// added), and the hook recovers the worker from the event's supervisor.
// The hook runs on a supervisor's goroutine: it only updates atomics and
// counters and queues the event for a logging goroutine, never waiting
// (events that do not fit the queue are counted in
// headway_supervisor_log_events_dropped_total, never their state changes).
// It never calls Add or Remove. Log records carry the Attr* keys
// ([AttrService], [AttrEvent], [AttrError], …).
//
// # Readiness
//
// With Config.Probes set, each worker has the readiness check
// "service/<name>", failing while the worker is pending, in backoff
// ("backoff: … last error: …"), stopped by a permanent error, or shutting
// down; the tree has "supervisor/<Name>". A service that returns an error
// wrapping suture.ErrDoNotRestart is removed by suture but stays visible
// here as [ServiceStopped], not ready, with its error. Jobs added with
// [Tree.AddJob] also get the job-health check "job/<name>" (ADR-003), and
// every failed run is recorded, logged and shown (ADR-004). A job's health
// allows for its schedule: it is overdue only when no success came within
// Tolerance of its longest healthy gaps (see JobConfig.Tolerance). The two checks
// of a job are added together or not at all, so a refused Add leaves no
// check behind.
//
// # Liveness
//
// A worker in backoff, or stopped by a permanent error, is alive and held,
// and /live must stay up: restarting the pod would turn a permanent stop
// into a crash loop, and a long backoff during a Redis outage into a
// restart of every pod. But its loop does not run, so it cannot heartbeat,
// and its watermark would turn wedged. So when a service added with
// [Tree.Add] is a [WatermarkReporter] (such as consumer.Consumer), the tree
// parks its watermark ([readiness.Watermark.Park]) until the service first
// runs, while it is in backoff ("parked: service in backoff") and once it
// is stopped ("parked: service stopped: <error>"): the loop is not ready
// with that reason and left out of /live. The tree unparks it when the
// service runs again, which gives the loop a whole liveness window to
// heartbeat. The event hook parks and unparks with atomics only.
//
// # Shutdown
//
// Cancelling Serve's context cancels every worker; each gets StopTimeout
// to return, and Serve returns within ShutdownTimeout. A service that
// ignores its context is reported (log, headway_supervisor_stop_timeouts_total)
// and abandoned.
//
// # Metrics
//
// headway_supervisor_restarts_total{service,reason},
// headway_supervisor_panics_total{service},
// headway_supervisor_backoffs_total{service},
// headway_supervisor_stop_timeouts_total{service},
// headway_supervisor_log_events_dropped_total, and, read at scrape time,
// headway_supervisor_service_status{service,status} and
// headway_supervisor_service_ready{service}. See docs/metrics.md. Trees
// sharing a Registerer share these series, so worker names must be unique
// across them: Add refuses a name another such tree uses.
package supervisor
