package healthtable

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/supervisor"
)

func init() {
	scenarios["crash-loop"] = crashLoop
	scenarios["job-overdue"] = jobOverdue
	scenarios["job-failing"] = jobFailing
	scenarios["shutdown"] = shutdown
	scenarios["tree-terminating"] = treeTerminating
	scenarios["long-backoff-leaving"] = longBackoffLeaving
}

var errRedisDown = errors.New("dial tcp 10.0.0.7:6379: connect: connection refused")

// loopWorker is a worker with a loop, reporting into its watermark as
// consumer.Consumer does. While err is set, a start heartbeats, records
// the failure in the watermark and returns it; a running loop notices err
// on its next tick and does the same. Otherwise a start waits for gate
// (when set: the connection being made), then succeeds, progresses and
// heartbeats until cancelled.
type loopWorker struct {
	wm      *readiness.Watermark
	err     atomic.Pointer[error]
	gate    atomic.Pointer[chan struct{}]
	healthy atomic.Int64 // starts that did not fail at once
}

var _ supervisor.WatermarkReporter = (*loopWorker)(nil)

func (l *loopWorker) Watermark() *readiness.Watermark { return l.wm }

func (l *loopWorker) String() string { return "worker" }

func (l *loopWorker) fail(err error) {
	if err == nil {
		l.err.Store(nil)
		return
	}
	l.err.Store(&err)
}

func (l *loopWorker) failed() error {
	if err := l.err.Load(); err != nil {
		l.wm.Heartbeat()
		l.wm.Fail(*err)
		return *err
	}
	return nil
}

func (l *loopWorker) Serve(ctx context.Context) error {
	if err := l.failed(); err != nil {
		return err
	}
	l.healthy.Add(1)
	if g := l.gate.Load(); g != nil {
		select {
		case <-*g:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l.wm.Heartbeat()
	l.wm.Succeed()
	l.wm.SetBacklog(0)
	l.wm.Progress("1-0")
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := l.failed(); err != nil {
				return err
			}
			l.wm.Heartbeat()
		}
	}
}

// slowStopper is a worker that, once cancelled, ignores its context until
// released, as a worker draining its last batch does.
type slowStopper struct {
	running   chan struct{} // closed when Serve starts
	cancelled chan struct{} // closed when its context ends
	release   func()        // lets Serve return
	released  chan struct{}
}

// newSlowStopper returns a slowStopper. Register its release as a cleanup
// after the stack's serve, so it runs before the stack waits for the tree.
func newSlowStopper() *slowStopper {
	w := &slowStopper{running: make(chan struct{}), cancelled: make(chan struct{}), released: make(chan struct{})}
	w.release = sync.OnceFunc(func() { close(w.released) })
	return w
}

func (w *slowStopper) String() string { return "slow" }

func (w *slowStopper) Serve(ctx context.Context) error {
	close(w.running)
	<-ctx.Done()
	close(w.cancelled)
	<-w.released
	return ctx.Err()
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
	}
	return false
}

// liveWatch polls /live until stopped and counts the answers that are not
// 200.
type liveWatch struct {
	bad  atomic.Int64
	last atomic.Int64
	stop func()
}

func (s *stack) watchLive() *liveWatch {
	w := &liveWatch{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if code, _ := s.get("/live"); code != http.StatusOK {
				w.bad.Add(1)
				w.last.Store(int64(code))
			}
			time.Sleep(2 * time.Millisecond) // the polling pace, not a synchronisation
		}
	})
	w.stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	s.t.Cleanup(w.stop)
	return w
}

func crashLoop(t *testing.T) observation {
	s := newStack(t, supervisor.Config{FailureThreshold: 2, FailureBackoff: 10 * time.Second, BackoffJitter: suture.NoJitter{}})
	liveness := 200 * time.Millisecond
	w := &loopWorker{wm: s.loop(readiness.WatermarkConfig{Name: "worker", LivenessWindow: liveness})}
	w.fail(fmt.Errorf("read stream: %w", errRedisDown))
	s.add("worker", w)
	live := s.watchLive()
	s.serve()
	inBackoff := func() bool {
		st, _ := s.tree.Status("worker")
		return st.State == supervisor.ServiceBackoff
	}
	testkit.Eventually(t, 5*time.Second, "in backoff", inBackoff)
	// Held past several liveness windows, the loop is parked, not wedged.
	testkit.Eventually(t, 5*time.Second, "the last heartbeat several liveness windows old", func() bool {
		snap := w.wm.Snapshot()
		hb := snap.LastHeartbeat
		return time.Since(hb) > 3*liveness
	})
	if !inBackoff() {
		t.Fatal("the worker left its backoff before its watermark aged")
	}
	o := s.observe(subject{service: "worker"})
	live.stop()
	if n := live.bad.Load(); n > 0 {
		t.Errorf("/live answered %d %d times while the worker crash-looped", live.last.Load(), n)
	}
	if st := w.wm.Status(); st.State != readiness.StateParked {
		t.Errorf("the worker's loop in backoff: %v %q, want parked", st.State, st.Reason)
	}
	return o
}

func jobOverdue(t *testing.T) observation {
	s := newStack(t, supervisor.Config{})
	var started atomic.Int64
	release := make(chan struct{})
	j, err := s.tree.AddJob(supervisor.JobConfig{
		Name: "settle", Interval: 100 * time.Millisecond, Jitter: -1, RunAtStart: true, Tolerance: 1,
		// The run hangs, ignoring its context, so it never ends: no failure
		// is recorded, the job only stops succeeding.
		Run: func(context.Context) error { started.Add(1); <-release; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.serve()
	t.Cleanup(func() { close(release) }) // before the stack's cleanup stops the tree
	testkit.Eventually(t, 5*time.Second, "overdue", func() bool {
		return started.Load() == 1 && j.Health().Status().State == readiness.StateOverdue
	})
	return s.observe(subject{job: j.Health()})
}

func jobFailing(t *testing.T) observation {
	s := newStack(t, supervisor.Config{})
	j, err := s.tree.AddJob(supervisor.JobConfig{
		Name: "settle", Interval: 20 * time.Millisecond, Jitter: -1, RunAtStart: true,
		Run: func(context.Context) error { return errors.New("settle bonuses: wallet service: 503") },
	})
	if err != nil {
		t.Fatal(err)
	}
	s.serve()
	testkit.Eventually(t, 5*time.Second, "failing", func() bool { return j.Health().Status().State == readiness.StateFailing })
	o := s.observe(subject{job: j.Health()})
	if snap := j.Health().Snapshot(); !snap.LastSuccess.IsZero() {
		t.Error("a job whose every run fails has a last success")
	}
	return o
}

func shutdown(t *testing.T) observation {
	s := newStack(t, supervisor.Config{})
	slow := newSlowStopper()
	s.add("slow", slow)
	s.add("worker", &loopWorker{wm: s.loop(readiness.WatermarkConfig{Name: "worker"})})
	s.serve()
	t.Cleanup(slow.release) // before the stack's cleanup waits for the tree
	testkit.Eventually(t, 5*time.Second, "serving", func() bool {
		code, _ := s.get("/ready")
		return closed(slow.running) && code == http.StatusOK
	})
	s.cancel()
	testkit.Eventually(t, 5*time.Second, "stopping", func() bool {
		return closed(slow.cancelled) && strings.HasPrefix(s.readyBody()["supervisor/"+s.tree.String()], "stopping:")
	})
	o := s.observe(subject{tree: true})
	if len(s.served) > 0 {
		t.Error("Serve returned while a worker was still stopping")
	}
	slow.release()
	return o
}

func treeTerminating(t *testing.T) observation {
	s := newStack(t, supervisor.Config{})
	slow := newSlowStopper()
	quit := make(chan struct{})
	s.add("slow", slow)
	s.add("outbox", serviceFunc(func(ctx context.Context) error {
		select {
		case <-quit:
			return fmt.Errorf("lost the outbox schema: %w", suture.ErrTerminateSupervisorTree)
		case <-ctx.Done():
			return ctx.Err()
		}
	}))
	s.serve()
	t.Cleanup(slow.release) // before the stack's cleanup waits for the tree
	testkit.Eventually(t, 5*time.Second, "serving", func() bool {
		code, _ := s.get("/ready")
		return closed(slow.running) && code == http.StatusOK
	})
	close(quit)
	testkit.Eventually(t, 5*time.Second, "stopping", func() bool {
		return closed(slow.cancelled) && strings.HasPrefix(s.readyBody()["supervisor/"+s.tree.String()], "stopping:")
	})
	o := s.observe(subject{tree: true})
	if len(s.served) > 0 {
		t.Error("Serve returned while a worker was still stopping")
	}
	slow.release()
	return o
}

// longBackoffLeaving uses the library's defaults but for a liveness window
// of 1s and a backoff of 2s: a loop that ran, then failed at every start
// (Redis refused it) until its restarts were paused, is restarted after
// the backoff and observed before its first iteration ends.
func longBackoffLeaving(t *testing.T) observation {
	liveness := time.Second
	s := newStack(t, supervisor.Config{FailureBackoff: 2 * liveness, BackoffJitter: suture.NoJitter{}})
	w := &loopWorker{wm: s.loop(readiness.WatermarkConfig{Name: "worker", LivenessWindow: liveness})}
	s.add("worker", w)
	s.serve()
	testkit.Eventually(t, 5*time.Second, "running, progressing", func() bool {
		code, _ := s.get("/ready")
		return code == http.StatusOK && w.wm.Status().State == readiness.StateProgressing
	})

	live := s.watchLive()
	gate := make(chan struct{})
	connect := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(connect)
	w.gate.Store(&gate)
	w.fail(fmt.Errorf("read stream: %w", errRedisDown))
	testkit.Eventually(t, 5*time.Second, "in backoff", func() bool {
		st, _ := s.tree.Status("worker")
		return st.State == supervisor.ServiceBackoff
	})
	w.fail(nil) // Redis is back: the next start succeeds, once connected
	testkit.Eventually(t, 10*time.Second, "restarted after the backoff", func() bool { return w.healthy.Load() == 2 })
	o := s.observe(subject{loop: w.wm})
	if snap := w.wm.Snapshot(); time.Since(snap.LastHeartbeat) <= liveness {
		t.Errorf("the last heartbeat is %v old at the restart, within the liveness window %v: the scenario shows nothing",
			time.Since(snap.LastHeartbeat), liveness)
	}
	if snap := w.wm.Snapshot(); snap.Parked {
		t.Error("still parked after the restart")
	}
	if st, _ := s.tree.Status("worker"); st.State != supervisor.ServiceRunning {
		t.Errorf("the worker after the restart: %v %q", st.State, st.Reason)
	}

	// Connected: its first iteration makes it ready; /live never failed.
	connect()
	testkit.Eventually(t, 5*time.Second, "ready after the restart", func() bool {
		code, _ := s.get("/ready")
		return code == http.StatusOK
	})
	live.stop()
	if n := live.bad.Load(); n > 0 {
		t.Errorf("/live answered %d %d times while the worker left its backoff", live.last.Load(), n)
	}
	return o
}

// serviceFunc is a suture.Service made of a function.
type serviceFunc func(ctx context.Context) error

func (f serviceFunc) Serve(ctx context.Context) error { return f(ctx) }

func (f serviceFunc) String() string { return "func" }
