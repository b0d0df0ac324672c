package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/thejerf/suture/v4"
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

// slowStop is how long the worker "slow" of terminating takes to stop.
const slowStop = 5 * time.Second

// terminating serves a tree with the workers "slow", which takes slowStop
// to return once cancelled, and "fatal", which ends the tree with
// suture.ErrTerminateSupervisorTree. It returns once the tree is going
// down and slow's context is cancelled: Serve has not returned, and will
// not before slowStop has passed or release is called. Serve's error is
// sent on done.
func terminating(t *testing.T) (cfg Config, h *harness, done <-chan error, release func()) {
	t.Helper()
	cfg, h = fastConfig(t)
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
	served := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		served <- tree.Serve(context.Background())
	}()
	var once bool
	release = func() {
		if !once {
			once = true
			close(released)
		}
	}
	t.Cleanup(func() {
		release()
		<-exited
	})
	eventually(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusOK, fmt.Sprint(code, body)
	})
	close(quit)
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the tree did not start stopping slow")
	}
	return cfg, h, served, release
}

// The tree, and every worker, is not ready as soon as a worker terminates
// it, while the others are still stopping.
func TestTerminateTreeNotReadyWhileStopping(t *testing.T) {
	_, h, done, release := terminating(t)
	const stopping = "stopping: the supervisor is shutting down"
	eventually(t, time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusServiceUnavailable && body["supervisor/test"] == stopping &&
			body["service/slow"] == stopping, fmt.Sprint(code, body)
	})
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) before slow stopped: the test saw no stopping window", err)
	default:
	}
	release()
	select {
	case err := <-done:
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
	_, h, _, _ := terminating(t)
	added := make(chan error, 1)
	go func() { added <- h.tree.Add("late", blocker{}) }()
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
	cfg, h, done, release := terminating(t)
	if err := h.tree.Add("late", blocker{}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Add while terminating = %v, want ErrStopped", err)
	}
	if _, ok := h.tree.Status("late"); ok {
		t.Error("the refused worker is still known")
	}
	if got, want := h.checkNames(t), []string{"service/fatal", "service/slow", "supervisor/test"}; !slices.Equal(got, want) {
		t.Errorf("checks after the refused Add = %v, want %v", got, want)
	}
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "worker" && lp.GetValue() == "late" {
					t.Errorf("series left behind: %s %v", mf.GetName(), m.GetLabel())
				}
			}
		}
	}
	release()
	<-done
	cfg.Name = "again"
	again, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Add("late", blocker{}); err != nil {
		t.Errorf("Add of the refused name to another tree on the same registerer and probes = %v", err)
	}
}
