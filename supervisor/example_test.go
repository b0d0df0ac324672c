package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/supervisor"
)

// waitFor polls cond (examples have no testing.T).
func waitFor(cond func() bool) {
	for deadline := time.Now().Add(5 * time.Second); !cond() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// relay stands in for a real loop: it runs until cancelled.
type relay struct{}

func (relay) Serve(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
func (relay) String() string                  { return "relay" }

// A tree supervises each worker under its own child supervisor; a worker
// that fails for good stays visible in /ready with its reason.
func ExampleTree() {
	probes, _ := readiness.NewProbes(readiness.ProbesConfig{})
	tree, err := supervisor.New(supervisor.Config{
		Name:   "demo",
		Logger: slog.New(slog.DiscardHandler),
		Probes: probes,
	})
	if err != nil {
		panic(err)
	}
	_ = tree.Add("relay", relay{})
	_ = tree.Add("consumer", suture.Service(serviceFunc(func(ctx context.Context) error {
		return fmt.Errorf("stream name is empty: %w", suture.ErrDoNotRestart)
	})))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tree.Serve(ctx) }()
	waitFor(func() bool {
		r, _ := tree.Status("relay")
		c, _ := tree.Status("consumer")
		return r.Ready && c.State == supervisor.ServiceStopped
	})

	rec := httptest.NewRecorder()
	probes.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready?full=1", nil))
	fmt.Print(rec.Code, " ", rec.Body.String())

	cancel()
	fmt.Println(errors.Is(<-done, context.Canceled))
	// Output:
	// 503 {
	//     "service/consumer": "stopped: returned a permanent error, not restarted: stream name is empty: service should not be restarted",
	//     "service/relay": "OK",
	//     "supervisor/demo": "OK"
	// }
	// true
}

type serviceFunc func(ctx context.Context) error

func (f serviceFunc) Serve(ctx context.Context) error { return f(ctx) }

// A scheduled job records every run in its readiness.JobHealth.
func ExampleTree_AddJob() {
	probes, _ := readiness.NewProbes(readiness.ProbesConfig{})
	tree, _ := supervisor.New(supervisor.Config{Logger: slog.New(slog.DiscardHandler), Probes: probes})
	job, err := tree.AddJob(supervisor.JobConfig{
		Name:       "outbox-prune",
		Interval:   time.Minute,
		RunAtStart: true,
		Run: func(ctx context.Context) error {
			return nil // delete published outbox rows older than a day
		},
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tree.Serve(ctx) }()
	waitFor(func() bool { return job.Health().Snapshot().Succeeded > 0 })

	fmt.Println(job.Health().Status().State)
	fmt.Println(probes.Check(false))
	cancel()
	<-done
	// Output:
	// ok
	// <nil>
}
