// Package status serves headway's status page: one server-rendered HTML
// page, for people, that shows a process's supervision tree at a glance —
// every supervised worker, every loop's watermark, every scheduled job and
// the overall readiness verdict — with the same data as JSON for tools.
//
// The probes answer Kubernetes with a code; this page answers the person on
// call with the reasons. It reads the same in-memory state as the probes
// ([readiness.Probes], [supervisor.Tree]) and nothing else: no Redis, no
// PostgreSQL. One goroutine, [Handler.Run], samples the loops for the
// trend charts.
//
// # Mounting
//
// Build a [Handler] with [New] and mount it next to the probes, on the
// internal listener (the reasons carry error texts, which are not for the
// public):
//
//	page, err := status.New(status.Config{Title: "wallet-consumer", Tree: tree, Probes: probes})
//	if err != nil { … }
//	mux := http.NewServeMux()
//	mux.Handle("/live", probes.LiveHandler())
//	mux.Handle("/ready", probes.ReadyHandler())
//	mux.Handle("/status", page)
//	go page.Run(ctx) // samples the loops for the trend charts until ctx ends
//
// Either Config.Tree or Config.Probes may be nil: the page then leaves out
// what it cannot know.
//
// # The page
//
// A banner says ready or not ready ([readiness.Probes.Check]) and lists each
// failing check with its reason; then the process's start time and uptime,
// the time the page was rendered, and one table per section:
//
//   - workers ([supervisor.Tree.Statuses]): name, state, ready, reason,
//     starts, failures, last error, and the state of the loop the worker
//     reports into (named by its supervisor, or Config.WorkerLoops) with
//     a link to its row, and its
//     reason unless it is progressing;
//   - loops ([readiness.Probes.Loops]): name, state and reason
//     ([readiness.Watermark.Status]), last progress and its age, position,
//     backlog (or "unknown"), lag ([readiness.WatermarkSnapshot.Lag], or "unknown");
//   - jobs ([readiness.Probes.Jobs]): name, state, reason, last success,
//     last run, interval, runs succeeded and failed.
//
// Each state is a coloured badge ([Tone]): green for moving (progressing,
// ok, running), amber for ready but worth a look or on its way (behind, idle,
// starting, waiting, pending, stopping), red for not ready (stalled,
// failing, alert, wedged, overdue, backoff, stopped) and grey for a loop its
// supervisor parked (the worker's row says why).
//
// The page has no script and no outside resource: inline CSS, and a meta
// refresh every Config.Refresh (default 5s). html/template escapes every
// name, reason, position and error, and every answer carries
// Cache-Control: no-store, X-Content-Type-Options: nosniff and a content
// security policy that allows no script.
//
// # JSON
//
// GET with ?format=json, or with an Accept header that prefers
// application/json to text/html, answers the [Snapshot] as JSON: the same
// data, with unknown values (backlog, lag, times not reached yet) as null.
// docs/status-page.md lists the fields.
package status
