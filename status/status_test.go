package status_test

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/status"
	"github.com/headwaylabs/headway/supervisor"
)

// world is a process with loops and jobs in every state, on a fake clock,
// and optionally a served supervision tree with a running worker, one
// stopped for good and one in backoff.
type world struct {
	clk    *testkit.FakeClock
	start  time.Time // the clock when the loops were made
	probes *readiness.Probes
	tree   *supervisor.Tree
}

// loop names and the state each is put in.
var loopStates = []struct {
	name  string
	state readiness.State
	tone  status.Tone
}{
	{"wallet/rolling", readiness.StateProgressing, status.ToneGood},
	{"wallet/promotion", readiness.StateBehind, status.ToneWarn},
	{"relay", readiness.StateIdle, status.ToneWarn},
	{"fresh", readiness.StateStarting, status.ToneWarn},
	{"audit", readiness.StateStalled, status.ToneBad},
	{"payouts", readiness.StateFailing, status.ToneBad},
	{"limits", readiness.StateAlert, status.ToneBad},
	{"ledger", readiness.StateWedged, status.ToneBad},
	{"bonus", readiness.StateParked, status.ToneOff},
}

var jobStates = []struct {
	name  string
	state readiness.State
	tone  status.Tone
}{
	{"outbox-prune", readiness.StateOK, status.ToneGood},
	{"nightly-report", readiness.StateWaiting, status.ToneWarn},
	{"reconcile", readiness.StateOverdue, status.ToneBad},
	{"settle-bets", readiness.StateFailing, status.ToneBad},
}

var workerStates = []struct {
	name  string
	state supervisor.ServiceState
	tone  status.Tone
}{
	{"relay-worker", supervisor.ServiceRunning, status.ToneGood},
	{"config-check", supervisor.ServiceStopped, status.ToneBad},
	{"flaky", supervisor.ServiceBackoff, status.ToneBad},
}

func newWorld(t *testing.T, withTree bool) *world {
	t.Helper()
	w := &world{clk: testkit.NewClock(), probes: newProbes(t)}
	w.start = w.clk.Now()
	wm := map[string]*readiness.Watermark{}
	newLoop := func(name string) {
		l, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: name, Now: w.clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.probes.AddLoop(l); err != nil {
			t.Fatal(err)
		}
		wm[name] = l
	}
	for _, l := range loopStates {
		if l.name != "fresh" {
			newLoop(l.name)
		}
	}
	jobs := map[string]*readiness.JobHealth{}
	for _, j := range []readiness.JobHealthConfig{
		{Name: "outbox-prune", Interval: 5 * time.Minute},
		{Name: "nightly-report", Interval: 24 * time.Hour, Deferred: true},
		{Name: "reconcile", Interval: 10 * time.Second},
		{Name: "settle-bets", Interval: time.Minute},
	} {
		j.Now = w.clk.Now
		job, err := readiness.NewJobHealth(j)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.probes.AddJob(job); err != nil {
			t.Fatal(err)
		}
		jobs[j.Name] = job
	}

	// Before the clock moves.
	wm["wallet/promotion"].SetBacklog(10)
	wm["relay"].Progress("42")

	w.clk.Advance(2 * time.Minute)
	wm["wallet/rolling"].Progress("1778846400000-0")
	wm["wallet/rolling"].SetBacklog(3)
	wm["wallet/rolling"].SetLag(12500 * time.Millisecond)
	wm["wallet/promotion"].Progress("1778846400000-5")
	wm["wallet/promotion"].SetBacklog(20)
	wm["wallet/promotion"].SetLag(90 * time.Second)
	wm["relay"].Succeed()
	wm["relay"].SetBacklog(0)
	wm["relay"].SetLag(0)
	wm["audit"].Heartbeat()
	for range readiness.DefaultFailureBound {
		wm["payouts"].Fail(errors.New("redis: connection refused"))
	}
	wm["limits"].Heartbeat()
	wm["limits"].SetBacklog(0)
	wm["limits"].Alert("legacy schema_version 1 entry on events:{wallet}", w.clk.Now().Add(5*time.Minute))
	wm["bonus"].Park("service in backoff")
	newLoop("fresh")

	jobs["outbox-prune"].Record(nil)
	for range readiness.DefaultJobFailures {
		jobs["settle-bets"].Record(errors.New("settle: statement timeout"))
	}

	for _, l := range loopStates {
		if got := wm[l.name].Status().State; got != l.state {
			t.Fatalf("loop %s is %v, want %v: fix the fixture", l.name, got, l.state)
		}
	}
	for _, j := range jobStates {
		if got := jobs[j.name].Status().State; got != j.state {
			t.Fatalf("job %s is %v, want %v: fix the fixture", j.name, got, j.state)
		}
	}

	if withTree {
		w.tree = newTree(t, "wallet-svc", w.probes)
		mustAdd(t, w.tree, "relay-worker", blocker{})
		mustAdd(t, w.tree, "config-check", permanent("stream name is empty"))
		mustAdd(t, w.tree, "flaky", failing("dial tcp 10.0.0.7:6379: connection refused"))
		serve(t, w.tree)
		for _, ws := range workerStates {
			waitForState(t, w.tree, ws.name, ws.state)
		}
	}
	return w
}

func mustAdd(t *testing.T, tree *supervisor.Tree, name string, svc interface {
	Serve(ctx context.Context) error
}) {
	t.Helper()
	if err := tree.Add(name, svc); err != nil {
		t.Fatal(err)
	}
}

func (w *world) handler(t *testing.T) *status.Handler {
	t.Helper()
	cfg := status.Config{Title: "wallet-consumer", Probes: w.probes, Now: w.clk.Now, Started: w.start.Add(-time.Hour)}
	if w.tree != nil {
		cfg.Tree = w.tree
	}
	return newHandler(t, cfg)
}

func TestPageShowsEverything(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	h := w.handler(t)
	body := page(t, h)

	for _, want := range []string{
		"<title>wallet-consumer · status</title>",
		"<h1>wallet-consumer</h1>",
		`<meta http-equiv="refresh" content="5">`,
		"started 2026-05-15 11:00:00 UTC · up 1h2m0s · rendered 2026-05-15 12:02:00 UTC · refreshes every 5s",
		`<section class="banner bad">`,
		"<strong>Not ready</strong>",
		"<small>supervisor wallet-svc</small>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	// The banner lists every failing check, loops, jobs and workers.
	for _, check := range []string{"loop/audit: stalled", "loop/ledger: wedged", "loop/bonus: parked",
		"job/reconcile: overdue", "job/settle-bets: failing", "service/flaky: backoff", "service/config-check: stopped"} {
		if !strings.Contains(body, "<li>"+check) {
			t.Errorf("banner lacks the failing check %q", check)
		}
	}

	for _, l := range w.probes.Loops() {
		st := l.Status()
		r := row(body, l.Name())
		if r == "" {
			t.Errorf("loop %s not shown", l.Name())
			continue
		}
		for _, want := range []string{badge(toneOfLoop(t, l.Name()), st.State.String()), template.HTMLEscapeString(st.Reason)} {
			if !strings.Contains(r, want) {
				t.Errorf("row of loop %s lacks %q:\n%s", l.Name(), want, r)
			}
		}
	}
	for _, tt := range []struct{ name, want string }{
		{"wallet/rolling", "<code>1778846400000-0</code>"},
		{"wallet/rolling", `<td class="num">3</td>`},
		{"wallet/rolling", `<td class="num">12.5s</td>`},
		{"wallet/rolling", "2026-05-15 12:02:00 UTC <span class=\"age\">(0s ago)</span>"},
		{"wallet/promotion", `<td class="num">20</td>`},
		{"wallet/promotion", `<td class="num">1m30s</td>`},
		{"relay", "<code>42</code>"},
		{"relay", "2026-05-15 12:00:00 UTC <span class=\"age\">(2m0s ago)</span>"},
		{"relay", `<td class="num">0</td>`},
		{"relay", `<td class="num">0s</td>`},
		{"audit", `<span class="unknown">never</span>`},
		{"audit", `<td class="num"><span class="unknown">unknown</span></td>
<td class="num"><span class="unknown">unknown</span></td>`},
	} {
		if r := row(body, tt.name); !strings.Contains(r, tt.want) {
			t.Errorf("row of loop %s lacks %q:\n%s", tt.name, tt.want, r)
		}
	}

	for _, j := range w.probes.Jobs() {
		st := j.Status()
		r := row(body, j.Name())
		if r == "" {
			t.Errorf("job %s not shown", j.Name())
			continue
		}
		for _, want := range []string{badge(toneOfJob(t, j.Name()), st.State.String()), template.HTMLEscapeString(st.Reason)} {
			if !strings.Contains(r, want) {
				t.Errorf("row of job %s lacks %q:\n%s", j.Name(), want, r)
			}
		}
	}
	for _, tt := range []struct{ name, want string }{
		{"outbox-prune", `<td class="num">5m0s</td>
<td class="num">1</td>
<td class="num">0</td>`},
		{"settle-bets", `<td class="num">1m0s</td>
<td class="num">0</td>
<td class="num">3</td>`},
		{"nightly-report", `<span class="unknown">never</span></td>
<td class="time"><span class="unknown">never</span>`},
	} {
		if r := row(body, tt.name); !strings.Contains(r, tt.want) {
			t.Errorf("row of job %s lacks %q:\n%s", tt.name, tt.want, r)
		}
	}

	for _, ws := range workerStates {
		r := row(body, ws.name)
		if r == "" {
			t.Errorf("worker %s not shown", ws.name)
			continue
		}
		if want := badge(ws.tone, ws.state.String()); !strings.Contains(r, want) {
			t.Errorf("row of worker %s lacks %q:\n%s", ws.name, want, r)
		}
	}
	for _, tt := range []struct{ name, want string }{
		{"relay-worker", "running: started 1 times, 0 failures"},
		{"relay-worker", `<span class="unknown">none</span>`},
		{"config-check", "stopped: returned a permanent error, not restarted: stream name is empty"},
		{"config-check", `<td class="num">1</td>
<td class="num">0</td>`},
		{"flaky", "backoff: "},
		{"flaky", "<code>dial tcp 10.0.0.7:6379: connection refused</code>"},
	} {
		if r := row(body, tt.name); !strings.Contains(r, tt.want) {
			t.Errorf("row of worker %s lacks %q:\n%s", tt.name, tt.want, r)
		}
	}
}

func toneOfLoop(t *testing.T, name string) status.Tone {
	t.Helper()
	for _, l := range loopStates {
		if l.name == name {
			return l.tone
		}
	}
	t.Fatalf("no loop %s in the fixture", name)
	return ""
}

func toneOfJob(t *testing.T, name string) status.Tone {
	t.Helper()
	for _, j := range jobStates {
		if j.name == name {
			return j.tone
		}
	}
	t.Fatalf("no job %s in the fixture", name)
	return ""
}

func ptr[T any](v T) *T { return &v }

func TestJSON(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	h := w.handler(t)
	s := snapshot(t, h)

	now := w.start.Add(2 * time.Minute)
	if s.Title != "wallet-consumer" || s.Tree != "wallet-svc" || s.Ready {
		t.Errorf("title, tree, ready = %q, %q, %v", s.Title, s.Tree, s.Ready)
	}
	if !s.RenderedAt.Equal(now) || !s.StartedAt.Equal(w.start.Add(-time.Hour)) || s.UptimeSeconds != 3720 {
		t.Errorf("rendered, started, uptime = %v, %v, %v", s.RenderedAt, s.StartedAt, s.UptimeSeconds)
	}
	var wantNotReady []string
	for _, err := range []error{w.probes.Check(false)} {
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			wantNotReady = append(wantNotReady, e.Error())
		}
	}
	// The backoff reason counts real time: compare the checks by name.
	if len(s.NotReady) != len(wantNotReady) {
		t.Errorf("not_ready = %q, want %q", s.NotReady, wantNotReady)
	} else {
		for i := range wantNotReady {
			if a, b := strings.SplitN(s.NotReady[i], ":", 2)[0], strings.SplitN(wantNotReady[i], ":", 2)[0]; a != b {
				t.Errorf("not_ready[%d] = %q, want %q", i, s.NotReady[i], wantNotReady[i])
			}
		}
	}

	reason := func(name string) string {
		for _, l := range w.probes.Loops() {
			if l.Name() == name {
				return l.Status().Reason
			}
		}
		for _, j := range w.probes.Jobs() {
			if j.Name() == name {
				return j.Status().Reason
			}
		}
		t.Fatalf("no loop or job %s", name)
		return ""
	}
	loop := func(name, state string, ready bool, tone status.Tone) status.Loop {
		return status.Loop{Name: name, State: state, Ready: ready, Tone: tone, Reason: reason(name)}
	}
	rolling := loop("wallet/rolling", "progressing", true, status.ToneGood)
	rolling.LastProgress, rolling.LastProgressAgeSeconds = ptr(now), ptr(0.0)
	rolling.Position, rolling.Backlog, rolling.LagSeconds = "1778846400000-0", ptr[int64](3), ptr(12.5)
	promotion := loop("wallet/promotion", "behind", true, status.ToneWarn)
	promotion.LastProgress, promotion.LastProgressAgeSeconds = ptr(now), ptr(0.0)
	promotion.Position, promotion.Backlog, promotion.LagSeconds = "1778846400000-5", ptr[int64](20), ptr(90.0)
	relay := loop("relay", "idle", true, status.ToneWarn)
	relay.LastProgress, relay.LastProgressAgeSeconds = ptr(w.start), ptr(120.0)
	relay.Position, relay.Backlog, relay.LagSeconds = "42", ptr[int64](0), ptr(0.0)
	limits := loop("limits", "alert", false, status.ToneBad)
	limits.Backlog = ptr[int64](0)
	wantLoops := []status.Loop{
		rolling, promotion, relay,
		loop("audit", "stalled", false, status.ToneBad),
		loop("payouts", "failing", false, status.ToneBad),
		limits,
		loop("ledger", "wedged", false, status.ToneBad),
		loop("bonus", "parked", false, status.ToneOff),
		loop("fresh", "starting", true, status.ToneWarn),
	}
	if !reflect.DeepEqual(s.Loops, wantLoops) {
		t.Errorf("loops:\n got %+v\nwant %+v", s.Loops, wantLoops)
	}

	job := func(name, state string, ready bool, tone status.Tone, interval time.Duration) status.Job {
		return status.Job{Name: name, State: state, Ready: ready, Tone: tone, Reason: reason(name), IntervalSeconds: interval.Seconds()}
	}
	prune := job("outbox-prune", "ok", true, status.ToneGood, 5*time.Minute)
	prune.LastSuccess, prune.LastRun, prune.RunsOK = ptr(now), ptr(now), 1
	settle := job("settle-bets", "failing", false, status.ToneBad, time.Minute)
	settle.LastRun, settle.RunsFailed = ptr(now), 3
	wantJobs := []status.Job{
		prune,
		job("nightly-report", "waiting", true, status.ToneWarn, 24*time.Hour),
		job("reconcile", "overdue", false, status.ToneBad, 10*time.Second),
		settle,
	}
	if !reflect.DeepEqual(s.Jobs, wantJobs) {
		t.Errorf("jobs:\n got %+v\nwant %+v", s.Jobs, wantJobs)
	}

	if len(s.Workers) != len(workerStates) {
		t.Fatalf("workers = %+v, want %d", s.Workers, len(workerStates))
	}
	for i, ws := range workerStates {
		got := s.Workers[i]
		if got.Name != ws.name || got.State != ws.state.String() || got.Tone != ws.tone || got.Ready != (ws.state == supervisor.ServiceRunning) {
			t.Errorf("worker %d = %+v, want %s %v %s", i, got, ws.name, ws.state, ws.tone)
		}
	}
	if got := s.Workers[1]; got.Starts != 1 || got.Failures != 0 || got.LastError != "stream name is empty: service should not be restarted" {
		t.Errorf("stopped worker = %+v", got)
	}
	if got := s.Workers[2]; got.Failures < 2 || got.LastError != "dial tcp 10.0.0.7:6379: connection refused" {
		t.Errorf("worker in backoff = %+v", got)
	}
}

// TestJSONNullsAndTimes checks the raw JSON: unknown values are null, times
// RFC 3339 in UTC.
func TestJSONNullsAndTimes(t *testing.T) {
	t.Parallel()
	clk := testkit.NewClock()
	probes := newProbes(t)
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "audit", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := probes.AddLoop(wm); err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, status.Config{Probes: probes, Now: clk.Now, Started: clk.Now()})
	rec := do(h, http.MethodGet, "/status", "Accept", "application/json")
	checkHeaders(t, rec, http.StatusOK, "application/json")
	var raw map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if raw["rendered_at"] != "2026-05-15T12:00:00Z" || raw["title"] != status.DefaultTitle || raw["ready"] != true {
		t.Errorf("rendered_at, title, ready = %v, %v, %v", raw["rendered_at"], raw["title"], raw["ready"])
	}
	if _, ok := raw["tree"]; ok {
		t.Error("tree given without a tree")
	}
	for _, list := range []string{"workers", "jobs", "not_ready"} {
		if v, ok := raw[list].([]any); !ok || len(v) != 0 {
			t.Errorf("%s = %#v, want []", list, raw[list])
		}
	}
	loop := raw["loops"].([]any)[0].(map[string]any)
	for _, k := range []string{"last_progress", "last_progress_age_seconds", "backlog", "lag_seconds"} {
		if v, ok := loop[k]; !ok || v != nil {
			t.Errorf("loop %s = %#v, want null", k, v)
		}
	}
}

const xss = "<script>alert(1)</script>"

func TestEscaping(t *testing.T) {
	t.Parallel()
	clk := testkit.NewClock()
	probes := newProbes(t)
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "loop " + xss, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := probes.AddLoop(wm); err != nil {
		t.Fatal(err)
	}
	wm.Progress(xss)
	wm.Alert("alert "+xss, clk.Now().Add(time.Minute))
	job, err := readiness.NewJobHealth(readiness.JobHealthConfig{Name: "job " + xss, Interval: time.Minute, FailureBound: 1, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := probes.AddJob(job); err != nil {
		t.Fatal(err)
	}
	job.Record(errors.New("run " + xss))

	tree := newTree(t, "tree "+xss, probes)
	mustAdd(t, tree, "worker "+xss, permanent("stopped "+xss))
	serve(t, tree)
	waitForState(t, tree, "worker "+xss, supervisor.ServiceStopped)

	h := newHandler(t, status.Config{Title: "title " + xss, Tree: tree, Probes: probes, Now: clk.Now})
	body := page(t, h)
	if strings.Contains(body, "<script") {
		t.Fatalf("page holds raw markup:\n%s", body)
	}
	escaped := template.HTMLEscapeString(xss)
	for _, want := range []string{
		"<title>title " + escaped,
		"<h1>title " + escaped,
		"supervisor tree " + escaped,
		`<td class="name">loop ` + escaped,
		"<code>" + escaped + "</code>",
		"alert: alert " + escaped,
		`<td class="name">job ` + escaped,
		"last error: run " + escaped,
		`<td class="name">worker ` + escaped,
		"<code>stopped " + escaped,
		"<li>service/worker " + escaped,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	rec := do(h, http.MethodGet, "/status?format=json")
	if b := rec.Body.String(); strings.Contains(b, "<script") || !strings.Contains(b, `\u003cscript\u003e`) {
		t.Errorf("JSON does not escape the markup:\n%s", b)
	}
	s := snapshot(t, h)
	if s.Loops[0].Position != xss || s.Workers[0].Name != "worker "+xss {
		t.Errorf("JSON changed the texts: %q, %q", s.Loops[0].Position, s.Workers[0].Name)
	}
}

func TestMethods(t *testing.T) {
	t.Parallel()
	h := newHandler(t, status.Config{Probes: newProbes(t), Now: testkit.NewClock().Now})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, "PROPFIND"} {
		rec := do(h, m, "/status")
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: code %d, Allow %q; want 405, GET, HEAD", m, rec.Code, rec.Header().Get("Allow"))
		}
		if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", m, rec.Header())
		}
	}

	get := do(h, http.MethodGet, "/status")
	for _, target := range []string{"/status", "/status?format=json"} {
		head := do(h, http.MethodHead, target)
		ct := "text/html; charset=utf-8"
		if strings.Contains(target, "json") {
			ct = "application/json"
		}
		checkHeaders(t, head, http.StatusOK, ct)
		if head.Body.Len() != 0 {
			t.Errorf("HEAD %s has a body of %d bytes", target, head.Body.Len())
		}
		if target == "/status" && head.Header().Get("Content-Length") != get.Header().Get("Content-Length") {
			t.Errorf("HEAD Content-Length %q, GET %q", head.Header().Get("Content-Length"), get.Header().Get("Content-Length"))
		}
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	h := newHandler(t, status.Config{Now: testkit.NewClock().Now})
	for _, tt := range []struct {
		target, accept string
		code           int
		contentType    string
	}{
		{"/status", "", 200, "text/html; charset=utf-8"},
		{"/status", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 200, "text/html; charset=utf-8"},
		{"/status", "*/*", 200, "text/html; charset=utf-8"},
		{"/status", "application/json", 200, "application/json"},
		{"/status", "application/json;q=0.5, text/html", 200, "text/html; charset=utf-8"},
		{"/status", "text/html;q=0.1, application/json", 200, "application/json"},
		{"/status", "application/json;q=0", 200, "text/html; charset=utf-8"},
		{"/status?format=json", "text/html", 200, "application/json"},
		{"/status?format=html", "application/json", 200, "text/html; charset=utf-8"},
		{"/status?format=xml", "", 400, "text/plain; charset=utf-8"},
	} {
		var rec = do(h, http.MethodGet, tt.target, "Accept", tt.accept)
		if tt.accept == "" {
			rec = do(h, http.MethodGet, tt.target)
		}
		if rec.Code != tt.code || rec.Header().Get("Content-Type") != tt.contentType {
			t.Errorf("GET %s, Accept %q: %d %q; want %d %q", tt.target, tt.accept,
				rec.Code, rec.Header().Get("Content-Type"), tt.code, tt.contentType)
		}
		if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s, Accept %q: headers %v", tt.target, tt.accept, rec.Header())
		}
	}
}

func TestNothingConfigured(t *testing.T) {
	t.Parallel()
	clk := testkit.NewClock()
	h := newHandler(t, status.Config{Now: clk.Now, Started: clk.Now()})
	body := page(t, h)
	for _, want := range []string{
		"<h1>headway</h1>",
		`<section class="banner off"><strong>No checks</strong>`,
		"No supervision tree configured.",
		"No probes configured.",
		"up 0s",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<table>") {
		t.Error("page has a table with nothing to show")
	}
	s := snapshot(t, h)
	if !s.Ready || s.Tree != "" || len(s.Workers)+len(s.Loops)+len(s.Jobs)+len(s.NotReady) != 0 {
		t.Errorf("snapshot = %+v", s)
	}
}

// Without probes, the verdict comes from the workers; without a tree, the
// page has no workers.
func TestTreeOrProbesAlone(t *testing.T) {
	t.Parallel()
	clk := testkit.NewClock()

	tree := newTree(t, "solo", nil)
	mustAdd(t, tree, "relay", blocker{})
	h := newHandler(t, status.Config{Tree: tree, Now: clk.Now})
	body := page(t, h)
	for _, want := range []string{
		"<strong>Not ready</strong>",
		"<li>service/relay: pending: the supervisor is not serving yet</li>",
		badge(status.ToneWarn, "pending"),
		"No probes configured.",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("tree alone: page lacks %q", want)
		}
	}
	serve(t, tree)
	waitForState(t, tree, "relay", supervisor.ServiceRunning)
	if s := snapshot(t, h); !s.Ready || len(s.NotReady) != 0 || len(s.Workers) != 1 || s.Tree != "solo" {
		t.Errorf("tree alone, serving: %+v", s)
	}

	probes := newProbes(t)
	h = newHandler(t, status.Config{Probes: probes, Now: clk.Now})
	body = page(t, h)
	for _, want := range []string{"<strong>Ready</strong>", "No supervision tree configured.", "No loops.", "No jobs."} {
		if !strings.Contains(body, want) {
			t.Errorf("probes alone: page lacks %q", want)
		}
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		refresh time.Duration
		want    string // the meta refresh tag, "" for none
	}{
		{0, `<meta http-equiv="refresh" content="5">`},
		{10 * time.Second, `<meta http-equiv="refresh" content="10">`},
		{1500 * time.Millisecond, `<meta http-equiv="refresh" content="1">`},
		{-1, ""},
	} {
		h := newHandler(t, status.Config{Refresh: tt.refresh})
		body := page(t, h)
		if tt.want == "" && strings.Contains(body, `http-equiv="refresh"`) || tt.want != "" && !strings.Contains(body, tt.want) {
			t.Errorf("Refresh %v: want %q in\n%s", tt.refresh, tt.want, body[:min(len(body), 400)])
		}
	}
	for _, bad := range []time.Duration{time.Nanosecond, 999 * time.Millisecond} {
		cfg := status.Config{Refresh: bad}
		if err := cfg.Validate(); !errors.Is(err, status.ErrInvalidConfig) {
			t.Errorf("Validate() with Refresh %v = %v, want ErrInvalidConfig", bad, err)
		}
		if h, err := status.New(cfg); h != nil || !errors.Is(err, status.ErrInvalidConfig) {
			t.Errorf("New() with Refresh %v = %v, %v", bad, h, err)
		}
	}
}

// TestConcurrentRequests renders while the loops report, for -race.
func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	h := w.handler(t)
	loops := w.probes.Loops()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			l := loops[i%len(loops)]
			l.Progress("1778846400000-1")
			l.SetBacklog(int64(i % 7))
			l.SetLag(time.Duration(i) * time.Millisecond)
		}
	})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for range 20 {
				if rec := do(h, http.MethodGet, "/status"); rec.Code != http.StatusOK {
					t.Errorf("code %d", rec.Code)
				}
				if rec := do(h, http.MethodGet, "/status?format=json"); rec.Code != http.StatusOK {
					t.Errorf("code %d", rec.Code)
				}
			}
		})
	}
	readers.Wait()
	close(stop)
	wg.Wait()
}
