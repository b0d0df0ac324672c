package readiness

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// get serves one request and returns the status code and the decoded JSON
// body (nil when the body is "{}").
func get(t *testing.T, h http.Handler, method, target string) (int, map[string]string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	if rec.Code == http.StatusMethodNotAllowed || rec.Code == http.StatusNotFound {
		return rec.Code, nil
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q", method, target, ct)
	}
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s %s: body %q: %v", method, target, rec.Body.String(), err)
	}
	return rec.Code, body
}

func TestProbesHTTP(t *testing.T) {
	t.Parallel()
	p, err := NewProbes(ProbesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w, clk := newTestWatermark(t, "wallet")
	j, err := NewJobHealth(JobHealthConfig{Name: "prune", Interval: time.Hour, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	custom := error(nil)
	if err := p.AddLoop(w); err != nil {
		t.Fatal(err)
	}
	if err := p.AddJob(j); err != nil {
		t.Fatal(err)
	}
	if err := p.AddReadinessCheck("custom", func() error { return custom }); err != nil {
		t.Fatal(err)
	}

	// Everything fine.
	w.Progress("1-0")
	w.SetBacklog(0)
	for _, path := range []string{"/live", "/ready"} {
		if code, body := get(t, p, http.MethodGet, path); code != http.StatusOK || len(body) != 0 {
			t.Errorf("GET %s = %d %v, want 200 {}", path, code, body)
		}
	}
	code, body := get(t, p, http.MethodGet, "/ready?full=1")
	want := map[string]string{"loop/wallet": "OK", "loops/live": "OK", "job/prune": "OK", "custom": "OK"}
	if code != http.StatusOK || !equalMaps(body, want) {
		t.Errorf("GET /ready?full=1 = %d %v, want 200 %v", code, body, want)
	}

	// A stalled loop: not ready, still live.
	w.SetBacklog(1200)
	clk.Advance(45 * time.Second)
	w.Heartbeat()
	if code, _ := get(t, p, http.MethodGet, "/live"); code != http.StatusOK {
		t.Errorf("stalled: GET /live = %d, want 200", code)
	}
	code, body = get(t, p, http.MethodGet, "/ready?full=1")
	if code != http.StatusServiceUnavailable || body["loop/wallet"] != "stalled: backlog 1200, no progress for 45s (window 30s)" || body["loops/live"] != "OK" {
		t.Errorf("stalled: GET /ready?full=1 = %d %v", code, body)
	}
	code, body = get(t, p, http.MethodGet, "/live?full=1")
	if code != http.StatusOK || !equalMaps(body, map[string]string{"loops/live": "OK"}) {
		t.Errorf("stalled: GET /live?full=1 = %d %v: liveness must only run liveness checks", code, body)
	}

	// A failing custom readiness check does not touch liveness.
	w.Progress("2-0")
	custom = NotReady("redis: connection refused")
	code, body = get(t, p, http.MethodGet, "/ready?full=1")
	if code != http.StatusServiceUnavailable || body["custom"] != "redis: connection refused" || body["loop/wallet"] != "OK" {
		t.Errorf("custom failing: GET /ready?full=1 = %d %v", code, body)
	}
	if code, _ := get(t, p, http.MethodGet, "/live"); code != http.StatusOK {
		t.Errorf("custom failing: GET /live = %d, want 200", code)
	}
	custom = nil

	// A wedged loop: not live.
	clk.Advance(2 * time.Minute)
	code, body = get(t, p, http.MethodGet, "/live?full=1")
	if code != http.StatusServiceUnavailable || body["loops/live"] != "loop/wallet: wedged: no heartbeat for 2m0s (liveness window 1m0s)" {
		t.Errorf("wedged: GET /live?full=1 = %d %v", code, body)
	}
	// The job, two hours without success, is overdue too.
	clk.Advance(2 * time.Hour)
	w.Heartbeat()
	code, body = get(t, p, http.MethodGet, "/ready?full=1")
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body["job/prune"], "overdue: no successful run since start 2h") {
		t.Errorf("overdue: GET /ready?full=1 = %d %v", code, body)
	}

	if code, _ := get(t, p, http.MethodPost, "/ready"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ready = %d, want 405", code)
	}
	if code, _ := get(t, p.LiveHandler(), http.MethodGet, "/healthz"); code != http.StatusOK {
		t.Errorf("LiveHandler at another path = %d, want 200", code)
	}
	if code, _ := get(t, p.ReadyHandler(), http.MethodGet, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("ReadyHandler at another path = %d, want 503", code)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestProbesDuplicates(t *testing.T) {
	t.Parallel()
	p, err := NewProbes(ProbesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := newTestWatermark(t, "wallet")
	w2, _ := newTestWatermark(t, "wallet")
	j, err := NewJobHealth(JobHealthConfig{Name: "prune", Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ok := func() error { return nil }
	steps := []struct {
		name string
		add  func() error
		dup  bool
	}{
		{"loop", func() error { return p.AddLoop(w) }, false},
		{"same loop name", func() error { return p.AddLoop(w2) }, true},
		{"custom readiness named like the loop", func() error { return p.AddReadinessCheck("loop/wallet", ok) }, true},
		{"custom liveness named like the loops'", func() error { return p.AddLivenessCheck("loops/live", ok) }, true},
		{"job", func() error { return p.AddJob(j) }, false},
		{"same job", func() error { return p.AddJob(j) }, true},
		{"custom", func() error { return p.AddLivenessCheck("heap", ok) }, false},
		{"same custom", func() error { return p.AddReadinessCheck("heap", ok) }, true},
	}
	for _, s := range steps {
		err := s.add()
		if s.dup != errors.Is(err, ErrDuplicateCheck) || (!s.dup && err != nil) {
			t.Errorf("%s: err = %v, want duplicate %v", s.name, err, s.dup)
		}
	}
	if len(p.Loops()) != 1 || len(p.Jobs()) != 1 {
		t.Errorf("Loops, Jobs = %d, %d; a refused add must not be recorded", len(p.Loops()), len(p.Jobs()))
	}
	for _, err := range []error{p.AddLoop(nil), p.AddJob(nil), p.AddReadinessCheck("x", nil), p.AddReadinessCheck("", ok)} {
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("invalid add: %v, want ErrInvalidConfig", err)
		}
	}
}

func TestProbesCheck(t *testing.T) {
	t.Parallel()
	p, err := NewProbes(ProbesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w, clk := newTestWatermark(t, "wallet")
	if err := p.AddLoop(w); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(false); err != nil {
		t.Fatalf("Check(false) on a starting loop = %v", err)
	}
	clk.Advance(40 * time.Second)
	w.Heartbeat()
	err = p.Check(false)
	if !errors.Is(err, ErrNotReady) || err.Error() != "loop/wallet: stalled: backlog unknown, no progress since start 40s ago (window 30s)" {
		t.Fatalf("Check(false) = %v", err)
	}
	if err := p.Check(true); err != nil {
		t.Fatalf("Check(true) on a stalled but live loop = %v", err)
	}
}

// TestLivenessListsWedgedLoops: one liveness check covers all loops and
// names only the wedged ones.
func TestLivenessListsWedgedLoops(t *testing.T) {
	t.Parallel()
	p, err := NewProbes(ProbesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	var ws []*Watermark
	for _, name := range []string{"a", "b", "c"} {
		w, err := NewWatermark(WatermarkConfig{Name: name, LivenessWindow: time.Minute, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AddLoop(w); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	clk.Advance(90 * time.Second)
	ws[1].Heartbeat()
	code, body := get(t, p, http.MethodGet, "/live?full=1")
	want := "loop/a: wedged: no heartbeat since start 1m30s ago (liveness window 1m0s); " +
		"loop/c: wedged: no heartbeat since start 1m30s ago (liveness window 1m0s)"
	if code != http.StatusServiceUnavailable || body["loops/live"] != want || len(body) != 1 {
		t.Errorf("GET /live?full=1 = %d %v\nwant loops/live: %s", code, body, want)
	}
	for _, w := range ws {
		w.Heartbeat()
	}
	if code, _ := get(t, p, http.MethodGet, "/live"); code != http.StatusOK {
		t.Errorf("after heartbeats GET /live = %d", code)
	}
}

// AddJobWithCheck adds a job and a custom check together or not at all.
func TestProbesAddJobWithCheck(t *testing.T) {
	t.Parallel()
	p, err := NewProbes(ProbesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	newJob := func(name string) *JobHealth {
		j, err := NewJobHealth(JobHealthConfig{Name: name, Interval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	ok := func() error { return nil }
	if err := p.AddJob(newJob("taken")); err != nil {
		t.Fatal(err)
	}
	if err := p.AddReadinessCheck("service/busy", ok); err != nil {
		t.Fatal(err)
	}
	// The job's name is taken: the custom check is not added either.
	if err := p.AddJobWithCheck(newJob("taken"), "service/taken", ok); !errors.Is(err, ErrDuplicateCheck) {
		t.Errorf("job name taken: %v", err)
	}
	// The custom name is taken: the job is not added either.
	if err := p.AddJobWithCheck(newJob("busy"), "service/busy", ok); !errors.Is(err, ErrDuplicateCheck) {
		t.Errorf("check name taken: %v", err)
	}
	if err := p.AddJobWithCheck(newJob("self"), "job/self", ok); !errors.Is(err, ErrDuplicateCheck) {
		t.Errorf("check named like its job: %v", err)
	}
	for _, err := range []error{p.AddJobWithCheck(nil, "x", ok), p.AddJobWithCheck(newJob("x"), "x", nil)} {
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("invalid: %v, want ErrInvalidConfig", err)
		}
	}
	if n := len(p.Jobs()); n != 1 {
		t.Errorf("%d jobs after refused adds, want 1", n)
	}
	// Both names are free again: nothing was reserved by the refusals.
	if err := p.AddJobWithCheck(newJob("busy"), "service/taken", ok); err != nil {
		t.Fatalf("free names: %v", err)
	}
	if err := p.AddJob(newJob("self")); err != nil {
		t.Errorf("job/self after a refused add: %v", err)
	}
	code, body := get(t, p, http.MethodGet, "/ready?full=1")
	want := map[string]string{"job/taken": "OK", "service/busy": "OK", "service/taken": "OK", "job/busy": "OK", "job/self": "OK"}
	if code != http.StatusOK || !equalMaps(body, want) {
		t.Errorf("GET /ready = %d %v, want %v", code, body, want)
	}
}

// AddLoopWithCheck adds a loop and a custom check together or not at all,
// and keeps a loop added before (the same watermark).
func TestProbesAddLoopWithCheck(t *testing.T) {
	t.Parallel()
	p, err := NewProbes(ProbesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	newWM := func(name string) *Watermark {
		w, err := NewWatermark(WatermarkConfig{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	ok := func() error { return nil }
	kept := newWM("kept")
	if err := p.AddLoop(kept); err != nil {
		t.Fatal(err)
	}
	if err := p.AddReadinessCheck("service/busy", ok); err != nil {
		t.Fatal(err)
	}
	if err := p.AddLoopWithCheck(kept, "service/kept", ok); err != nil {
		t.Errorf("the same watermark again, with a check: %v", err)
	}
	if err := p.AddLoop(kept); !errors.Is(err, ErrDuplicateCheck) {
		t.Errorf("AddLoop of the same watermark twice: %v, want ErrDuplicateCheck", err)
	}
	// Another watermark under the kept loop's name: the check is not
	// added either.
	if err := p.AddLoopWithCheck(newWM("kept"), "service/other", ok); !errors.Is(err, ErrDuplicateCheck) {
		t.Errorf("loop name taken by another watermark: %v", err)
	}
	// The custom name is taken: the loop is not added either.
	if err := p.AddLoopWithCheck(newWM("busy"), "service/busy", ok); !errors.Is(err, ErrDuplicateCheck) {
		t.Errorf("check name taken: %v", err)
	}
	if err := p.AddLoopWithCheck(newWM("self"), "loop/self", ok); !errors.Is(err, ErrDuplicateCheck) {
		t.Errorf("check named like its loop: %v", err)
	}
	for _, err := range []error{p.AddLoopWithCheck(nil, "x", ok), p.AddLoopWithCheck(newWM("x"), "x", nil), p.AddLoopWithCheck(newWM("x"), "", ok)} {
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("invalid: %v, want ErrInvalidConfig", err)
		}
	}
	if n := len(p.Loops()); n != 1 {
		t.Errorf("%d loops after refused adds, want 1", n)
	}
	if err := p.AddLoopWithCheck(newWM("busy"), "service/other", ok); err != nil {
		t.Fatalf("free names: %v", err)
	}
	_, body := get(t, p, http.MethodGet, "/ready?full=1")
	for _, name := range []string{"loop/kept", "service/kept", "service/busy", "loop/busy", "service/other", "loops/live"} {
		if _, ok := body[name]; !ok {
			t.Errorf("check %s missing: %v", name, body)
		}
	}
	if len(body) != 6 {
		t.Errorf("checks %v, want exactly 6", body)
	}
}
