package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwaylabs/headway/readiness"
)

// Two trees against one registerer: no error, and both trees' workers are
// exported.
func TestMetricsSharedRegisterer(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	for _, name := range []string{"a", "b"} {
		tree, err := New(Config{Name: name, Registerer: reg})
		if err != nil {
			t.Fatalf("tree %s: %v", name, err)
		}
		if err := tree.Add("worker-"+name, blocker{}); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP headway_supervisor_service_ready 1 if the supervised service counts as ready (running, not in backoff, not stopped), else 0.
# TYPE headway_supervisor_service_ready gauge
headway_supervisor_service_ready{worker="worker-a"} 0
headway_supervisor_service_ready{worker="worker-b"} 0
# HELP headway_supervisor_service_status Current state of a supervised service (1 for the current state, 0 for the others): pending, running, backoff, stopped, stopping.
# TYPE headway_supervisor_service_status gauge
headway_supervisor_service_status{status="backoff",worker="worker-a"} 0
headway_supervisor_service_status{status="backoff",worker="worker-b"} 0
headway_supervisor_service_status{status="pending",worker="worker-a"} 1
headway_supervisor_service_status{status="pending",worker="worker-b"} 1
headway_supervisor_service_status{status="running",worker="worker-a"} 0
headway_supervisor_service_status{status="running",worker="worker-b"} 0
headway_supervisor_service_status{status="stopped",worker="worker-a"} 0
headway_supervisor_service_status{status="stopped",worker="worker-b"} 0
headway_supervisor_service_status{status="stopping",worker="worker-a"} 0
headway_supervisor_service_status{status="stopping",worker="worker-b"} 0
# HELP headway_supervisor_restarts_total Times a supervised service ended unexpectedly and was (or, after backoff, will be) restarted, by reason (error, returned, panic).
# TYPE headway_supervisor_restarts_total counter
headway_supervisor_restarts_total{reason="error",worker="worker-a"} 0
headway_supervisor_restarts_total{reason="error",worker="worker-b"} 0
headway_supervisor_restarts_total{reason="panic",worker="worker-a"} 0
headway_supervisor_restarts_total{reason="panic",worker="worker-b"} 0
headway_supervisor_restarts_total{reason="returned",worker="worker-a"} 0
headway_supervisor_restarts_total{reason="returned",worker="worker-b"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"headway_supervisor_service_ready", "headway_supervisor_service_status", "headway_supervisor_restarts_total"); err != nil {
		t.Error(err)
	}
	lint(t, reg)
}

// Trees sharing a registerer share their metrics, so a worker name used by
// one is refused by the others (it would export duplicate series and make
// Gather fail); a refused Add releases the names it claimed.
func TestSharedRegistererRefusesDuplicateWorkerNames(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	probes, err := readiness.NewProbes(readiness.ProbesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	newTree := func(name string, p *readiness.Probes) *Tree {
		t.Helper()
		tree, err := New(Config{Name: name, Registerer: reg, Probes: p, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("tree %s: %v", name, err)
		}
		return tree
	}
	a, b := newTree("a", nil), newTree("b", probes)
	if err := a.Add("relay", blocker{}); err != nil {
		t.Fatal(err)
	}
	err = b.Add("relay", blocker{})
	if !errors.Is(err, ErrDuplicateName) || !strings.Contains(err.Error(), `tree "a"`) {
		t.Errorf("b.Add(relay) = %v, want ErrDuplicateName naming tree a", err)
	}
	if _, err := b.AddJob(JobConfig{Name: "relay", Interval: time.Hour, Run: func(context.Context) error { return nil }}); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("b.AddJob(relay) = %v, want ErrDuplicateName", err)
	}
	if _, ok := b.Status("relay"); ok {
		t.Error("b knows the refused worker")
	}
	// b's refusals did not release a's claim.
	if err := newTree("c", nil).Add("relay", blocker{}); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("c.Add(relay) = %v, want ErrDuplicateName", err)
	}
	// A name refused by b's probes is released for the other trees.
	if err := probes.AddReadinessCheck("service/prune", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.Add("prune", blocker{}); !errors.Is(err, readiness.ErrDuplicateCheck) {
		t.Errorf("b.Add(prune) = %v, want readiness.ErrDuplicateCheck", err)
	}
	if err := a.Add("prune", blocker{}); err != nil {
		t.Errorf("a.Add(prune) after b's refusal = %v", err)
	}
	// A tree with no registerer shares nothing.
	if err := newTreeNoReg(t).Add("relay", blocker{}); err != nil {
		t.Errorf("Add(relay) on a tree without a registerer = %v", err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Errorf("Gather = %v", err)
	}
	if got := testutil.CollectAndCount(reg, "headway_supervisor_service_ready"); got != 2 {
		t.Errorf("%d headway_supervisor_service_ready series, want 2 (relay and prune of tree a)", got)
	}
	lint(t, reg)
}

func newTreeNoReg(t *testing.T) *Tree {
	t.Helper()
	tree, err := New(Config{Name: "solo", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}
