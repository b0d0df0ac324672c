package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/readiness"
)

// A worker that returns suture.ErrTerminateSupervisorTree stops the whole
// tree, and Serve returns its error.
func TestTerminateTree(t *testing.T) {
	cfg, h := fastConfig(t)
	tree, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.tree = tree
	if err := tree.Add("other", blocker{}); err != nil {
		t.Fatal(err)
	}
	if err := tree.Add("fatal", serviceFunc(func(ctx context.Context) error {
		return fmt.Errorf("lost the outbox schema: %w", suture.ErrTerminateSupervisorTree)
	})); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tree.Serve(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, suture.ErrTerminateSupervisorTree) {
			t.Errorf("Serve() = %v, want ErrTerminateSupervisorTree", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the tree did not stop")
	}
	if code, body := h.ready(t); code != http.StatusServiceUnavailable || body["supervisor/test"] != "stopped: the supervisor has stopped" {
		t.Errorf("after termination: %d %v", code, body)
	}
}

// slowStop is how long the worker "slow" of a slowTree takes to stop.
const slowStop = 5 * time.Second

// slowTree is a serving tree with the workers "slow", which takes slowStop
// to return once cancelled, and "fatal", which ends the tree with
// suture.ErrTerminateSupervisorTree when told to.
type slowTree struct {
	cfg       Config
	h         *harness
	done      <-chan error    // Serve's error
	cancelled <-chan struct{} // closed when slow's context ends
	terminate func()          // makes fatal end the tree
	cancel    func()          // cancels Serve's context
	release   func()          // lets slow return at once
}

// serveSlowTree returns a slowTree whose workers both run. Serve returns
// neither before slowStop has passed nor before release once slow is
// cancelled.
func serveSlowTree(t *testing.T) *slowTree {
	t.Helper()
	cfg, h := fastConfig(t)
	cfg.StopTimeout = 2 * slowStop
	cfg.ShutdownTimeout = 2 * slowStop
	tree, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.tree = tree
	released := make(chan struct{})
	cancelled := make(chan struct{})
	slow := serviceFunc(func(ctx context.Context) error {
		<-ctx.Done()
		close(cancelled)
		select {
		case <-released:
		case <-time.After(slowStop):
		}
		return ctx.Err()
	})
	quit := make(chan struct{})
	fatal := serviceFunc(func(ctx context.Context) error {
		select {
		case <-quit:
			return fmt.Errorf("lost the outbox schema: %w", suture.ErrTerminateSupervisorTree)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err := tree.Add("slow", slow); err != nil {
		t.Fatal(err)
	}
	if err := tree.Add("fatal", fatal); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		served <- tree.Serve(ctx)
	}()
	st := &slowTree{
		cfg: cfg, h: h, done: served, cancelled: cancelled, cancel: cancel,
		terminate: sync.OnceFunc(func() { close(quit) }),
		release:   sync.OnceFunc(func() { close(released) }),
	}
	t.Cleanup(func() {
		st.release()
		cancel()
		<-exited
	})
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusOK, fmt.Sprint(code, body)
	})
	return st
}

// terminating returns a slowTree that fatal has ended: the tree is going
// down, slow is cancelled, and Serve has not returned.
func terminating(t *testing.T) *slowTree {
	t.Helper()
	st := serveSlowTree(t)
	st.terminate()
	select {
	case <-st.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the tree did not start stopping slow")
	}
	return st
}

// The tree, and every worker, is not ready as soon as a worker terminates
// it, while the others are still stopping.
func TestTerminateTreeNotReadyWhileStopping(t *testing.T) {
	st := terminating(t)
	const stopping = "stopping: the supervisor is shutting down"
	testkit.EventuallyState(t, time.Second, func() (bool, string) {
		code, body := st.h.ready(t)
		return code == http.StatusServiceUnavailable && body["supervisor/test"] == stopping &&
			body["service/slow"] == stopping, fmt.Sprint(code, body)
	})
	select {
	case err := <-st.done:
		t.Fatalf("Serve returned (%v) before slow stopped: the test saw no stopping window", err)
	default:
	}
	st.release()
	select {
	case err := <-st.done:
		if !errors.Is(err, suture.ErrTerminateSupervisorTree) {
			t.Errorf("Serve() = %v, want ErrTerminateSupervisorTree", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the tree did not stop")
	}
}

// While a terminated tree stops its workers, Add returns ErrStopped at
// once instead of waiting for the root supervisor to stop.
func TestAddWhileTerminatingDoesNotBlock(t *testing.T) {
	st := terminating(t)
	added := make(chan error, 1)
	go func() { added <- st.h.tree.Add("late", blocker{}) }()
	select {
	case err := <-added:
		if !errors.Is(err, ErrStopped) {
			t.Errorf("Add while terminating = %v, want ErrStopped", err)
		}
	case <-time.After(time.Second):
		t.Fatalf("Add while terminating blocked for over 1s (slow takes %v to stop)", slowStop)
	}
}

// An Add refused because the tree is going down leaves nothing behind: no
// worker, no check, no metric series, and the name is free for another
// tree on the same registerer and probes.
func TestRefusedAddLeavesNothingBehind(t *testing.T) {
	st := terminating(t)
	h := st.h
	if err := h.tree.Add("late", blocker{}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Add while terminating = %v, want ErrStopped", err)
	}
	if _, ok := h.tree.Status("late"); ok {
		t.Error("the refused worker is still known")
	}
	if got, want := h.checkNames(t), []string{"service/fatal", "service/slow", "supervisor/test"}; !slices.Equal(got, want) {
		t.Errorf("checks after the refused Add = %v, want %v", got, want)
	}
	if got := h.seriesOf(t, "late"); len(got) > 0 {
		t.Errorf("series left behind: %v", got)
	}
	st.release()
	<-st.done
	cfg := st.cfg
	cfg.Name = "again"
	again, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Add("late", blocker{}); err != nil {
		t.Errorf("Add of the refused name to another tree on the same registerer and probes = %v", err)
	}
}

// duringAdd is a service whose Watermark runs f: Add calls it after its
// state check and before the root supervisor takes the worker.
type duringAdd struct {
	blocker
	f func()
}

func (s duringAdd) Watermark() *readiness.Watermark {
	s.f()
	return nil
}

// A tree that starts going down while an Add is under way waits for the
// root supervisor to take the worker: the Add neither blocks until the
// root has stopped nor is refused after registering the worker.
func TestTreeGoesDownDuringAdd(t *testing.T) {
	for _, tc := range []struct {
		name string
		down func(*slowTree)
	}{
		{"terminated", func(st *slowTree) { st.terminate() }},
		{"cancelled", func(st *slowTree) { st.cancel() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := serveSlowTree(t)
			svc := duringAdd{f: func() {
				tc.down(st)
				// The tree must not stop its workers before Add is done:
				// give it the time to do so wrongly.
				select {
				case <-st.cancelled:
				case <-time.After(200 * time.Millisecond):
				}
			}}
			added := make(chan error, 1)
			go func() { added <- st.h.tree.Add("late", svc) }()
			select {
			case err := <-added:
				if err != nil {
					t.Errorf("Add = %v, want the worker taken before the tree went down", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("Add blocked for over 2s (slow takes %v to stop)", slowStop)
			}
			if _, ok := st.h.tree.Status("late"); !ok {
				t.Error("the added worker is unknown")
			}
		})
	}
}
