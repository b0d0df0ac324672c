package supervisor

import (
	"fmt"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwaylabs/headway/internal/promutil"
)

// Restart reasons, the values of the reason label of
// headway_supervisor_restarts_total.
const (
	ReasonError    = "error"    // Serve returned an error
	ReasonReturned = "returned" // Serve returned nil while its context was live
	ReasonPanic    = "panic"    // Serve panicked
)

type metrics struct {
	restarts     *prometheus.CounterVec // worker, reason
	panics       *prometheus.CounterVec // worker
	backoffs     *prometheus.CounterVec // worker
	stopTimeouts *prometheus.CounterVec // worker
	dropped      prometheus.Counter
	state        *stateCollector // nil without a registerer; shared by the trees on it
}

func newMetrics(reg prometheus.Registerer, t *Tree) (*metrics, error) {
	m := &metrics{
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "headway", Subsystem: "supervisor", Name: "restarts_total",
			Help: "Times a supervised service ended unexpectedly and was (or, after backoff, will be) restarted, by reason (error, returned, panic).",
		}, []string{"worker", "reason"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "headway", Subsystem: "supervisor", Name: "panics_total",
			Help: "Panics recovered from a supervised service.",
		}, []string{"worker"}),
		backoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "headway", Subsystem: "supervisor", Name: "backoffs_total",
			Help: "Times a service's restarts were paused because it failed too often.",
		}, []string{"worker"}),
		stopTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "headway", Subsystem: "supervisor", Name: "stop_timeouts_total",
			Help: "Times a service did not return from Serve within its stop timeout.",
		}, []string{"worker"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "headway", Subsystem: "supervisor", Name: "log_events_dropped_total",
			Help: "Supervision events not logged because the log queue was full (metrics and readiness still saw them).",
		}),
	}
	var err error
	if m.restarts, err = promutil.Register(reg, m.restarts); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if m.panics, err = promutil.Register(reg, m.panics); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if m.backoffs, err = promutil.Register(reg, m.backoffs); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if m.stopTimeouts, err = promutil.Register(reg, m.stopTimeouts); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if m.dropped, err = promutil.Register(reg, m.dropped); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if reg != nil {
		c, err := promutil.Register(reg, newStateCollector())
		if err != nil {
			return nil, fmt.Errorf("supervisor: %w", err)
		}
		c.attach(t)
		m.state = c
	}
	return m, nil
}

// stateCollector exports each worker's state, read at scrape time from the
// state the event hook keeps. Trees built against one registerer share it,
// and it keeps their worker names unique across them: two trees exporting
// one service name would make the registry's Gather fail on duplicate
// series.
type stateCollector struct {
	mu    sync.Mutex
	trees []*Tree
	names map[string]*Tree // worker name -> the tree it belongs to

	status, ready *prometheus.Desc
}

// claim reserves name for t's worker; it fails when another tree on the
// same registerer has a worker with that name.
func (c *stateCollector) claim(name string, t *Tree) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if other, ok := c.names[name]; ok && other != t {
		return fmt.Errorf("%w: %q is a worker of the tree %q, which shares this tree's Registerer", ErrDuplicateName, name, other.cfg.Name)
	}
	c.names[name] = t
	return nil
}

// release undoes claim.
func (c *stateCollector) release(name string, t *Tree) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.names[name] == t {
		delete(c.names, name)
	}
}

func newStateCollector() *stateCollector {
	return &stateCollector{
		names: make(map[string]*Tree),
		status: prometheus.NewDesc("headway_supervisor_service_status",
			"Current state of a supervised service (1 for the current state, 0 for the others): pending, running, backoff, stopped, stopping.",
			[]string{"worker", "status"}, nil),
		ready: prometheus.NewDesc("headway_supervisor_service_ready",
			"1 if the supervised service counts as ready (running, not in backoff, not stopped), else 0.",
			[]string{"worker"}, nil),
	}
}

func (c *stateCollector) attach(t *Tree) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trees = append(c.trees, t)
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.status
	ch <- c.ready
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	trees := slices.Clone(c.trees)
	c.mu.Unlock()
	for _, t := range trees {
		for _, st := range t.Statuses() {
			for _, s := range serviceStates {
				v := 0.0
				if s == st.State {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(c.status, prometheus.GaugeValue, v, st.Name, s.String())
			}
			v := 0.0
			if st.Ready {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, v, st.Name)
		}
	}
}
