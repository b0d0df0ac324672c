package service_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/service"
	"github.com/headwaylabs/headway/supervisor"
)

// applied records the events a handler applied, and can hold some of
// them until released.
type applied struct {
	mu      sync.Mutex
	times   map[string]int
	started map[string]bool
	hold    map[string]chan struct{}
}

func newApplied(held ...string) *applied {
	a := &applied{times: map[string]int{}, started: map[string]bool{}, hold: map[string]chan struct{}{}}
	for _, id := range held {
		a.hold[id] = make(chan struct{})
	}
	return a
}

func (a *applied) handle(_ context.Context, m *consumer.Message) error {
	id := m.Envelope.EventID
	a.mu.Lock()
	a.started[id] = true
	ch := a.hold[id]
	a.mu.Unlock()
	if ch != nil {
		<-ch // ignores ctx on purpose: work in flight that must finish
	}
	a.mu.Lock()
	a.times[id]++
	a.mu.Unlock()
	return nil
}

func (a *applied) release(id string) { close(a.hold[id]) }

func (a *applied) isStarted(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.started[id]
}

func (a *applied) count(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.times[id]
}

func publish(t *testing.T, rdb redis.UniversalClient, stream, id, agg string) {
	t.Helper()
	fields, err := event.Encode(event.Envelope{EventID: id, EventType: platform.BetSettledConfirmed, SchemaVersion: 2,
		BrandID: 3, OccurredAt: time.Now(), AggregateID: agg, Payload: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: fields}).Err(); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// newService builds a service with a rolling consumer of stream applying
// through a.
func newService(t *testing.T, rdb redis.UniversalClient, stream string, a *applied, drain time.Duration) *service.Service {
	t.Helper()
	s, err := service.New(service.Config{Name: "rolling-service", Addr: "127.0.0.1:0", DrainDelay: drain,
		Registry: prometheus.NewPedanticRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Supervisor: supervisor.Config{StopTimeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := consumer.New(consumer.Config{Catalog: platform.Catalog(), Client: rdb, Stream: stream,
		CatalogStream: platform.StreamWallet, Group: platform.ServiceRolling, Consumer: "pod-a",
		Handlers: map[event.Type]consumer.Handler{platform.BetSettledConfirmed: a.handle},
		Block:    50 * time.Millisecond, Registerer: s.Registerer(), Logger: s.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add("rolling", c); err != nil {
		t.Fatal(err)
	}
	return s
}

// running is a Run in progress: done closes when it has returned, with
// err.
type running struct {
	done chan struct{}
	err  error
}

// run runs s until the returned cancel is called (as SIGTERM would).
func run(t *testing.T, s *service.Service) (cancel func(), r *running) {
	ctx, stop := context.WithCancel(context.Background())
	r = &running{done: make(chan struct{})}
	go func() { r.err = s.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return")
		}
	})
	return stop, r
}

// TestRunServesTheEndpoints: one Add registers the consumer's checks; the
// four endpoints answer with them.
func TestRunServesTheEndpoints(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := prefix + event.StreamKey(platform.StreamWallet)
	a := newApplied()
	s := newService(t, rdb, stream, a, -1)
	if err := s.AddFunc("heartbeat", func(ctx context.Context) error { <-ctx.Done(); return nil }); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	base := "http://" + s.Addr()
	publish(t, rdb, stream, "e1", "bet-1")
	testkit.Eventually(t, 10*time.Second, "e1 applied and /ready 200", func() bool {
		code, _ := get(t, base+"/ready")
		return a.count("e1") == 1 && code == http.StatusOK
	})
	_, body := get(t, base+"/ready?full=1")
	var checks map[string]string
	if err := json.Unmarshal([]byte(body), &checks); err != nil {
		t.Fatalf("/ready?full=1: %v: %s", err, body)
	}
	for _, name := range []string{"service/rolling", "service/heartbeat", service.ShutdownCheck, "loops/live",
		"loop/" + platform.ServiceRolling + "@" + stream} {
		if checks[name] != "OK" {
			t.Errorf("check %s = %q, want OK (all: %v)", name, checks[name], checks)
		}
	}
	if code, _ := get(t, base+"/live"); code != http.StatusOK {
		t.Errorf("/live = %d", code)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "headway_consumer_entries_total") ||
		!strings.Contains(body, "headway_supervisor_service_status") {
		t.Errorf("/metrics = %d without the consumer's and the tree's metrics", code)
	}
	if code, body := get(t, base+"/status"); code != http.StatusOK || !strings.Contains(body, "rolling-service") {
		t.Errorf("/status = %d", code)
	}
}

// TestShutdownOrder: when shutdown starts, /ready fails at once while the
// consumer still reads and applies (for DrainDelay); then the tree stops
// the consumer, which waits for its handler in flight; nothing is lost or
// applied twice, and everything applied is acknowledged.
func TestShutdownOrder(t *testing.T) {
	rdb, prefix := redistest.Client(t)
	stream := prefix + event.StreamKey(platform.StreamWallet)
	a := newApplied("e1", "e3")
	const drain = 2 * time.Second
	s := newService(t, rdb, stream, a, drain)
	stop, r := run(t, s)
	base := "http://" + s.Addr()
	publish(t, rdb, stream, "e1", "bet-1")
	testkit.Eventually(t, 10*time.Second, "e1 in flight", func() bool { return a.isStarted("e1") })

	stop() // as SIGTERM
	testkit.Eventually(t, drain/2, "/ready 503 shutting down, at once", func() bool {
		code, body := get(t, base+"/ready?full=1")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
	})
	// Readiness failed first: the consumer still reads and applies.
	publish(t, rdb, stream, "e2", "bet-2")
	a.release("e1")
	testkit.Eventually(t, drain, "e1 and e2 applied while /ready fails", func() bool {
		return a.count("e1") == 1 && a.count("e2") == 1
	})
	if code, _ := get(t, base+"/live"); code != http.StatusOK {
		t.Errorf("/live = %d while draining", code)
	}
	// A handler in flight when the workers are stopped finishes first.
	publish(t, rdb, stream, "e3", "bet-3")
	testkit.Eventually(t, drain, "e3 in flight", func() bool { return a.isStarted("e3") })
	testkit.Eventually(t, 2*drain, "the tree stopping its workers", func() bool {
		for _, st := range s.Tree().Statuses() {
			if st.State == supervisor.ServiceStopping {
				return true
			}
		}
		return false
	})
	select {
	case <-r.done:
		t.Fatalf("Run returned (%v) with a handler in flight", r.err)
	default:
	}
	a.release("e3")
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("Run = %v, want nil after a shutdown asked for", r.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after the handler finished")
	}
	for _, id := range []string{"e1", "e2", "e3"} {
		if n := a.count(id); n != 1 {
			t.Errorf("%s applied %d times, want 1", id, n)
		}
	}
	p, err := rdb.XPending(context.Background(), stream, platform.ServiceRolling).Result()
	if err != nil || p.Count != 0 {
		t.Errorf("pending after shutdown: %v %v, want 0: what finished must be acknowledged", p, err)
	}
	if _, err := http.Get(base + "/live"); err == nil {
		t.Error("the HTTP server still answers after Run returned")
	}
}

// TestNewRefusesAnAddressInUse: the listen address is bound by New, so a
// port in use fails before any worker starts.
func TestNewRefusesAnAddressInUse(t *testing.T) {
	s, err := service.New(service.Config{Name: "a", Addr: "127.0.0.1:0", Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if _, err := service.New(service.Config{Name: "b", Addr: s.Addr(), Registry: prometheus.NewRegistry()}); err == nil ||
		!strings.Contains(err.Error(), "listen") {
		t.Errorf("second New on %s = %v, want a listen error", s.Addr(), err)
	}
	if _, err := service.New(service.Config{}); err == nil {
		t.Error("New without a Name succeeded")
	}
}
