package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/readiness"
)

// Tree states, in order.
const (
	treeNew int32 = iota
	treeServing
	treeStopping
	treeStopped
)

// Tree is headway's supervision tree on suture v4: a root supervisor with
// one child supervisor per worker, so that suture's backoff — which pauses
// a whole supervisor — pauses only the worker that keeps failing.
//
// Its event hook keeps per-worker state (running, in backoff, stopped for
// good), logs every event to slog and counts it in metrics, without ever
// blocking the supervisor. A worker in backoff, or stopped by a permanent
// error, is not ready with the reason; with Config.Probes set, each worker
// has the readiness check "service/<name>". The watermark of a
// [WatermarkReporter] is parked while the worker is held, so it stays
// live.
//
// Add and AddJob may be called before or while the tree serves, from any
// goroutine — except from inside a suture event hook. All methods are safe
// for concurrent use.
//
// A Tree is itself a suture.Service and may be added to another suture
// supervisor. It deliberately does not implement suture.HasSupervisor, so
// that parent does not overwrite the tree's event hook with its own.
type Tree struct {
	cfg     Config
	log     *slog.Logger
	root    *suture.Supervisor
	metrics *metrics

	state  atomic.Int32
	events chan logEvent

	// gate orders Add against the tree going down. Add holds it for
	// reading from its state check until the root supervisor has taken the
	// worker; stopping holds it for writing while it leaves treeServing. So
	// the root is still serving, and takes the worker at once, whenever an
	// Add has passed the check: suture never refuses it, and never makes it
	// wait for the root to stop.
	gate sync.RWMutex

	mu      sync.RWMutex
	workers map[string]*worker
	bySup   map[*suture.Supervisor]*worker
	order   []*worker
}

var _ suture.Service = (*Tree)(nil)

// New returns a tree that serves nothing until [Tree.Serve]. Defaults for
// zero fields: Name "headway", Logger slog.Default(), Registerer none,
// Probes none, FailureThreshold 5, FailureDecay 30s, FailureBackoff 15s,
// BackoffJitter suture's default, StopTimeout 10s, ShutdownTimeout
// StopTimeout + 5s, EventQueue 256. It returns an error wrapping
// [ErrInvalidConfig] for an invalid cfg, or the error of registering the
// metrics or the tree's check.
func New(cfg Config) (*Tree, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	t := &Tree{
		cfg:     cfg,
		log:     cfg.Logger,
		events:  make(chan logEvent, cfg.EventQueue),
		workers: make(map[string]*worker),
		bySup:   make(map[*suture.Supervisor]*worker),
	}
	m, err := newMetrics(cfg.Registerer, t)
	if err != nil {
		return nil, err
	}
	t.metrics = m
	t.root = suture.New(cfg.Name, suture.Spec{
		EventHook: t.hook,
		// The root's children are worker supervisors, which only end when
		// the tree stops; it never needs backoff.
		Timeout:                  cfg.ShutdownTimeout,
		DontPropagateTermination: false,
	})
	if cfg.Probes != nil {
		if err := cfg.Probes.AddReadinessCheck("supervisor/"+cfg.Name, t.check); err != nil {
			return nil, fmt.Errorf("supervisor: %w", err)
		}
	}
	return t, nil
}

// String returns the tree's name.
func (t *Tree) String() string { return t.cfg.Name }

func (t *Tree) spec() suture.Spec {
	return suture.Spec{
		EventHook:        t.hook, // suture would copy the root's anyway
		FailureThreshold: t.cfg.FailureThreshold,
		FailureDecay:     t.cfg.FailureDecay.Seconds(),
		FailureBackoff:   t.cfg.FailureBackoff,
		BackoffJitter:    t.cfg.BackoffJitter,
		Timeout:          t.cfg.StopTimeout,
	}
}

// WatermarkReporter is a service that reports its progress into a
// [readiness.Watermark] (consumer.Consumer does). [Tree.Add] parks that
// watermark ([readiness.Watermark.Park]) while the service is not running
// — before its first start, in restart backoff, and once stopped by a
// permanent error — so a loop the supervisor holds is not ready, with the
// reason, but never fails /live; it unparks it when the service runs
// again. Watermark may return nil: the service is then supervised without.
type WatermarkReporter interface {
	Watermark() *readiness.Watermark
}

// Add supervises svc as the worker name, under its own child supervisor:
// it is started now if the tree serves, else when it starts. Whenever svc's
// Serve returns while the tree runs it is restarted, with backoff when it
// fails too often; an error wrapping suture.ErrDoNotRestart removes it for
// good (it stays visible, not ready), and one wrapping
// suture.ErrTerminateSupervisorTree stops the whole tree (which is not
// ready from the moment svc returns it).
//
// When svc is a [WatermarkReporter], its watermark is parked until svc
// first runs, while svc is in backoff ("parked: service in backoff") and
// after a permanent error ("parked: service stopped: <error>"), and
// unparked when svc runs again: the loop is then not ready, but /live
// stays up (see package doc). The event hook does it with atomics only.
// With Config.Probes, Add registers the worker's check "service/<name>"
// and, for a WatermarkReporter, its loop ("loop/<watermark name>", as
// Probes.AddLoop does; a loop already added there is kept): a service is
// registered once, here.
//
// name labels the worker's logs, metrics and check: keep it short and
// bounded. Add returns an error wrapping [ErrInvalidConfig] for an empty
// name or a nil svc, [ErrDuplicateName] if name is taken (in this tree, or
// in another tree sharing Config.Registerer), [ErrStopped] once the tree
// is shutting down, or the error of adding its checks to Config.Probes.
// A refused Add leaves nothing behind: no worker, no check, no metric
// series, no claim on the name. It blocks only until the root supervisor
// takes the worker, which a serving tree does at once (once the tree is
// going down, Add returns ErrStopped at once); never call it from an
// event hook.
func (t *Tree) Add(name string, svc suture.Service) error {
	return t.add(name, svc, nil)
}

func (t *Tree) add(name string, svc suture.Service, job *readiness.JobHealth) error {
	if name == "" || svc == nil {
		return fmt.Errorf("%w: Add needs a name and a service (name %q)", ErrInvalidConfig, name)
	}
	t.gate.RLock()
	defer t.gate.RUnlock()
	if t.state.Load() >= treeStopping {
		return fmt.Errorf("%w: cannot add %q", ErrStopped, name)
	}
	w := &worker{name: name, tree: t, job: job, sup: suture.New(name, t.spec())}
	if r, ok := svc.(WatermarkReporter); ok {
		w.wm = r.Watermark()
	}
	m := t.metrics
	w.restartsError = m.restarts.WithLabelValues(name, ReasonError)
	w.restartsReturned = m.restarts.WithLabelValues(name, ReasonReturned)
	w.restartsPanic = m.restarts.WithLabelValues(name, ReasonPanic)
	w.panics = m.panics.WithLabelValues(name)
	w.backoffs = m.backoffs.WithLabelValues(name)
	w.stopTimeouts = m.stopTimeouts.WithLabelValues(name)

	// Register the worker before its supervisor can emit an event. The
	// lock is never held across a call into suture: the hook takes it.
	t.mu.Lock()
	if _, dup := t.workers[name]; dup {
		t.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrDuplicateName, name)
	}
	if m.state != nil {
		if err := m.state.claim(name, t); err != nil {
			t.mu.Unlock()
			return err
		}
	}
	t.workers[name] = w
	t.bySup[w.sup] = w
	t.order = append(t.order, w)
	t.mu.Unlock()

	// The service check and the job's or the loop's check are added
	// together or not at all: a check left behind by a refused Add would
	// report the worker pending forever and keep its name. A loop the
	// caller added to the probes itself is kept (AddLoopWithCheck).
	if p := t.cfg.Probes; p != nil {
		var err error
		switch {
		case job != nil:
			err = p.AddJobWithCheck(job, "service/"+name, w.check)
		case w.wm != nil:
			err = p.AddLoopWithCheck(w.wm, "service/"+name, w.check)
		default:
			err = p.AddReadinessCheck("service/"+name, w.check)
		}
		if err != nil {
			t.forget(w)
			return fmt.Errorf("supervisor: %w", err)
		}
	}

	w.park(parkPending)
	w.sup.Add(&service{w: w, inner: svc})
	if tok := t.root.Add(w.sup); tok == (suture.ServiceToken{}) {
		// The gate rules this out. Should suture refuse all the same,
		// forget what can be undone; the check cannot be removed from
		// the probes, but it reports the tree stopping.
		t.forget(w)
		return fmt.Errorf("%w: cannot add %q", ErrStopped, name)
	}
	return nil
}

// forget undoes the registration of a worker whose Add was refused: its
// entry, its claim on the name and its metric series.
func (t *Tree) forget(w *worker) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.workers, w.name)
	delete(t.bySup, w.sup)
	for i, o := range t.order {
		if o == w {
			t.order = append(t.order[:i], t.order[i+1:]...)
			break
		}
	}
	m := t.metrics
	for _, reason := range []string{ReasonError, ReasonReturned, ReasonPanic} {
		m.restarts.DeleteLabelValues(w.name, reason)
	}
	m.panics.DeleteLabelValues(w.name)
	m.backoffs.DeleteLabelValues(w.name)
	m.stopTimeouts.DeleteLabelValues(w.name)
	if m.state != nil {
		m.state.release(w.name, t)
	}
}

// stopping moves a serving tree to treeStopping, which fails its checks
// and refuses any further Add. It waits for an Add in progress to hand
// its worker to the root supervisor.
func (t *Tree) stopping() {
	t.gate.Lock()
	defer t.gate.Unlock()
	t.state.CompareAndSwap(treeServing, treeStopping)
}

// AddJob builds a scheduled [Job] from cfg (Logger defaults to the tree's)
// and adds it as the worker cfg.Name; with Config.Probes set, its job
// health becomes the check "job/<name>" beside "service/<name>". Errors as
// for [NewJob] and [Tree.Add].
func (t *Tree) AddJob(cfg JobConfig) (*Job, error) {
	if cfg.Logger == nil {
		cfg.Logger = t.log
	}
	j, err := NewJob(cfg)
	if err != nil {
		return nil, err
	}
	if err := t.add(cfg.Name, j, j.Health()); err != nil {
		return nil, err
	}
	return j, nil
}

// Serve runs the tree until ctx is cancelled, then shuts it down: every
// worker's context is cancelled and each gets StopTimeout to return; Serve
// itself returns at most ShutdownTimeout after ctx is cancelled (plus up to
// StopTimeout to flush the log queue), leaving behind — and logging — any
// service that did not stop. A worker returning an error wrapping
// suture.ErrTerminateSupervisorTree shuts the tree down the same way. The
// tree and its workers are not ready from the moment either starts.
// Serve returns ctx's error, or the error of the worker that terminated
// the tree. Workers' contexts carry ctx's values but not its deadline:
// the tree ends them.
// A tree serves once: a second call returns [ErrAlreadyServed].
func (t *Tree) Serve(ctx context.Context) error {
	if !t.state.CompareAndSwap(treeNew, treeServing) {
		return fmt.Errorf("%w (%s): %w", ErrAlreadyServed, t.cfg.Name, suture.ErrDoNotRestart)
	}
	quit := make(chan struct{})
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		t.logLoop(quit)
	}()
	// The root serves on a context of its own, cancelled only once the
	// tree is stopping, so that it never stops taking workers while an
	// Add may still hand it one (see Tree.gate).
	rootCtx, cancelRoot := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRoot()
	stop := context.AfterFunc(ctx, func() {
		t.stopping()
		cancelRoot()
	})

	err := t.root.Serve(rootCtx)
	if err != nil && err == rootCtx.Err() {
		err = ctx.Err() // the root stopped because ctx ended
	}

	stop()
	t.state.Store(treeStopped)
	report, _ := t.root.UnstoppedServiceReport()
	for _, u := range report {
		t.log.Error("service still running after the shutdown deadline: abandoned",
			slog.String(AttrSupervisor, t.cfg.Name), slog.String(AttrService, u.Name),
			slog.Duration("shutdown_timeout", t.cfg.ShutdownTimeout))
	}
	close(quit)
	// Give the log queue a bounded time to drain: a stuck log handler must
	// not hold the shutdown.
	timer := time.NewTimer(t.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case <-logged:
	case <-timer.C:
	}
	return err
}

// check is the tree's own readiness check.
func (t *Tree) check() error {
	switch t.state.Load() {
	case treeNew:
		return readiness.NotReady("pending: the supervisor is not serving yet")
	case treeStopping:
		return readiness.NotReady("stopping: the supervisor is shutting down")
	case treeStopped:
		return readiness.NotReady("stopped: the supervisor has stopped")
	}
	return nil
}

// Status returns the state of the worker name; ok is false if there is no
// such worker.
func (t *Tree) Status(name string) (st ServiceStatus, ok bool) {
	t.mu.RLock()
	w := t.workers[name]
	t.mu.RUnlock()
	if w == nil {
		return ServiceStatus{}, false
	}
	return w.status(), true
}

// Statuses returns the state of every worker, in the order they were
// added.
func (t *Tree) Statuses() []ServiceStatus {
	t.mu.RLock()
	ws := append([]*worker(nil), t.order...)
	t.mu.RUnlock()
	out := make([]ServiceStatus, len(ws))
	for i, w := range ws {
		out[i] = w.status()
	}
	return out
}
