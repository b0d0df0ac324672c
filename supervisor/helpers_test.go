package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/thejerf/suture/v4"
	"go.uber.org/goleak"

	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/readiness"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fastConfig returns a config with short timings, a JSON logger into a
// buffer, a fresh registry and probes.
type harness struct {
	tree   *Tree
	probes *readiness.Probes
	reg    *prometheus.Registry
	logs   *testkit.SyncBuffer
}

func fastConfig(t *testing.T) (Config, *harness) {
	t.Helper()
	h := &harness{reg: prometheus.NewPedanticRegistry(), logs: &testkit.SyncBuffer{}}
	p, err := readiness.NewProbes(readiness.ProbesConfig{Registerer: h.reg})
	if err != nil {
		t.Fatal(err)
	}
	h.probes = p
	return Config{
		Name:             "test",
		Logger:           slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:       h.reg,
		Probes:           p,
		FailureThreshold: 3,
		FailureDecay:     10 * time.Second,
		FailureBackoff:   200 * time.Millisecond,
		BackoffJitter:    suture.NoJitter{},
		StopTimeout:      500 * time.Millisecond,
		ShutdownTimeout:  time.Second,
	}, h
}

// start builds the tree from cfg and serves it until the test ends (or
// the returned stop is called, which waits for Serve to return and returns
// its error).
func start(t *testing.T, cfg Config, h *harness) (stop func() error) {
	t.Helper()
	tree, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.tree = tree
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tree.Serve(ctx) }()
	var once sync.Once
	var serveErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
		})
		return serveErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// ready serves GET /ready?full=1 and returns the code and the checks.
func (h *harness) ready(t *testing.T) (int, map[string]string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.probes.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready?full=1", nil))
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return rec.Code, body
}

func (h *harness) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// seriesOf returns the gathered series labelled with the worker name.
func (h *harness) seriesOf(t *testing.T, worker string) []string {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			mine := false
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
				mine = mine || lp.GetName() == "worker" && lp.GetValue() == worker
			}
			if mine {
				out = append(out, mf.GetName()+"{"+strings.Join(labels, ",")+"}")
			}
		}
	}
	return out
}

// blocker is a service that runs until its context is cancelled.
type blocker struct{}

func (blocker) Serve(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// lint fails the test on any metric lint problem.
func lint(t *testing.T, reg prometheus.Gatherer) {
	t.Helper()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

var errRedis = errors.New("redis: connection refused")

// fakeClock is the shared manual clock.
type fakeClock = testkit.FakeClock

func newClock() *fakeClock { return testkit.NewClock() }

// live serves GET /live?full=1 and returns the code and the checks.
func (h *harness) live(t *testing.T) (int, map[string]string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.probes.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/live?full=1", nil))
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return rec.Code, body
}

// checkNames returns the names of the checks /ready runs, sorted.
func (h *harness) checkNames(t *testing.T) []string {
	t.Helper()
	_, body := h.ready(t)
	names := make([]string, 0, len(body))
	for n := range body {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
