package readiness_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/headwaylabs/headway/readiness"
)

// clock is a manual clock, so the examples are deterministic.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *clock { return &clock{t: time.Date(2026, 5, 15, 12, 0, 0, 0, time.UTC)} }

// A consumer loop reports into its watermark; the rules turn the readings
// into a status with a reason.
func ExampleWatermark() {
	clk := newClock()
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{
		Name:        "events:{wallet}/rolling_service",
		StallWindow: 30 * time.Second,
		Now:         clk.Now,
	})
	if err != nil {
		panic(err)
	}

	// One iteration of the loop: read, apply, acknowledge, measure.
	wm.Heartbeat()
	wm.Progress("1778846400000-0")
	wm.SetBacklog(1200)
	fmt.Println(wm.Status().Reason)

	// The loop keeps iterating but applies nothing for 45 s.
	clk.Advance(45 * time.Second)
	wm.Heartbeat()
	st := wm.Status()
	fmt.Println(st.Ready(), st.Reason)

	// It moves again.
	wm.Progress("1778846400000-1")
	wm.SetBacklog(1199)
	fmt.Println(wm.Status().Ready())
	// Output:
	// progressing: last progress 0s ago at 1778846400000-0, backlog 1200
	// false stalled: backlog 1200, no progress for 45s (window 30s)
	// true
}

// An idle loop — nothing to do — is ready however long ago it last moved.
func ExampleWatermark_idle() {
	clk := newClock()
	wm, _ := readiness.NewWatermark(readiness.WatermarkConfig{Name: "relay", Now: clk.Now})
	wm.Progress("42")
	for range 60 {
		clk.Advance(time.Minute)
		wm.Succeed()     // the read worked
		wm.SetBacklog(0) // and found nothing
	}
	fmt.Println(wm.Status().Reason)
	// Output:
	// idle: no backlog, last progress 1h0m0s ago
}

// Another component (brandguard's legacy-schema signal) holds a loop not
// ready for a while.
func ExampleWatermark_Alert() {
	clk := newClock()
	wm, _ := readiness.NewWatermark(readiness.WatermarkConfig{Name: "rolling", Now: clk.Now})
	wm.SetBacklog(0)
	wm.Alert("legacy schema_version 1 entry on events:{wallet}", clk.Now().Add(5*time.Minute))
	fmt.Println(wm.Status().Reason)
	clk.Advance(5*time.Minute + time.Second)
	wm.Heartbeat()
	fmt.Println(wm.Status().State)
	// Output:
	// alert: legacy schema_version 1 entry on events:{wallet} (held for 5m0s more)
	// idle
}

// A scheduled job records each run; repeated failure makes it unready with
// the error in the reason.
func ExampleJobHealth() {
	clk := newClock()
	job, _ := readiness.NewJobHealth(readiness.JobHealthConfig{
		Name:         "outbox-prune",
		Interval:     5 * time.Minute,
		FailureBound: 2,
		Now:          clk.Now,
	})
	job.Record(nil)
	fmt.Println(job.Status().Reason)
	clk.Advance(5 * time.Minute)
	job.Record(errors.New("delete published rows: statement timeout"))
	clk.Advance(5 * time.Minute)
	job.Record(errors.New("delete published rows: statement timeout"))
	fmt.Println(job.Status().Reason)
	// Output:
	// ok: last success 0s ago (interval 5m0s)
	// failing: last 2 runs failed (bound 2), last error: delete published rows: statement timeout
}

// Probes serve /live and /ready; ?full=1 gives each check's reason.
func ExampleProbes() {
	clk := newClock()
	probes, _ := readiness.NewProbes(readiness.ProbesConfig{})
	wm, _ := readiness.NewWatermark(readiness.WatermarkConfig{Name: "wallet", Now: clk.Now})
	_ = probes.AddLoop(wm)

	wm.Progress("1-0")
	wm.SetBacklog(1200)
	clk.Advance(45 * time.Second)
	wm.Heartbeat()

	for _, target := range []string{"/live", "/ready?full=1"} {
		rec := httptest.NewRecorder()
		probes.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		fmt.Print(target, " ", rec.Code, " ", rec.Body.String())
	}
	// Output:
	// /live 200 {}
	// /ready?full=1 503 {
	//     "loop/wallet": "stalled: backlog 1200, no progress for 45s (window 30s)",
	//     "loops/live": "OK"
	// }
}
