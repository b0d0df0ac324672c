package supervisor

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
headway_supervisor_service_ready{service="worker-a"} 0
headway_supervisor_service_ready{service="worker-b"} 0
# HELP headway_supervisor_service_status Current state of a supervised service (1 for the current state, 0 for the others): pending, running, backoff, stopped, stopping.
# TYPE headway_supervisor_service_status gauge
headway_supervisor_service_status{service="worker-a",status="backoff"} 0
headway_supervisor_service_status{service="worker-a",status="pending"} 1
headway_supervisor_service_status{service="worker-a",status="running"} 0
headway_supervisor_service_status{service="worker-a",status="stopped"} 0
headway_supervisor_service_status{service="worker-a",status="stopping"} 0
headway_supervisor_service_status{service="worker-b",status="backoff"} 0
headway_supervisor_service_status{service="worker-b",status="pending"} 1
headway_supervisor_service_status{service="worker-b",status="running"} 0
headway_supervisor_service_status{service="worker-b",status="stopped"} 0
headway_supervisor_service_status{service="worker-b",status="stopping"} 0
# HELP headway_supervisor_restarts_total Times a supervised service ended unexpectedly and was (or, after backoff, will be) restarted, by reason (error, returned, panic).
# TYPE headway_supervisor_restarts_total counter
headway_supervisor_restarts_total{reason="error",service="worker-a"} 0
headway_supervisor_restarts_total{reason="error",service="worker-b"} 0
headway_supervisor_restarts_total{reason="panic",service="worker-a"} 0
headway_supervisor_restarts_total{reason="panic",service="worker-b"} 0
headway_supervisor_restarts_total{reason="returned",service="worker-a"} 0
headway_supervisor_restarts_total{reason="returned",service="worker-b"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"headway_supervisor_service_ready", "headway_supervisor_service_status", "headway_supervisor_restarts_total"); err != nil {
		t.Error(err)
	}
	lint(t, reg)
}
