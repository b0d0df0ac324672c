package healthtable

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/backoff"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/supervisor"
)

// observation is what a scenario saw at one moment: the answers of /live
// and /ready, the subject's reason and status, and the metrics.
type observation struct {
	live, ready int
	reason      string
	status      string // "loop: idle", "job: overdue", "service: backoff" or "—"
	metrics     []*dto.MetricFamily
}

// scenario drives one row's situation and returns what it observed.
type scenario func(t *testing.T) observation

// scenarios maps each row of docs/health.md to its scenario; the files
// scenario_*_test.go fill it.
var scenarios = map[string]scenario{}

// stack is one process's health plumbing, as a service embeds it: a
// registry, the probes and a supervision tree.
type stack struct {
	t      *testing.T
	reg    *prometheus.Registry
	probes *readiness.Probes
	tree   *supervisor.Tree
	log    *slog.Logger
	logs   *testkit.SyncBuffer

	cancel context.CancelFunc
	served chan error
}

// newStack builds a stack; cfg's Name, Probes, Registerer and Logger are
// filled in. The tree is served by serve.
func newStack(t *testing.T, cfg supervisor.Config) *stack {
	t.Helper()
	s := &stack{t: t, reg: prometheus.NewPedanticRegistry(), logs: &testkit.SyncBuffer{}}
	s.log = slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", s.logs.String())
		}
	})
	var err error
	if s.probes, err = readiness.NewProbes(readiness.ProbesConfig{Registerer: s.reg}); err != nil {
		t.Fatal(err)
	}
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	cfg.Probes, cfg.Registerer, cfg.Logger = s.probes, s.reg, s.log
	if s.tree, err = supervisor.New(cfg); err != nil {
		t.Fatal(err)
	}
	return s
}

// serve runs the tree until the test ends (or stop).
func (s *stack) serve() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.served = cancel, make(chan error, 1)
	go func() { s.served <- s.tree.Serve(ctx) }()
	s.t.Cleanup(func() { s.stop(30 * time.Second) })
}

// stop cancels the tree and waits up to within for Serve to return.
func (s *stack) stop(within time.Duration) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	select {
	case <-s.served:
		s.cancel = nil
	case <-time.After(within):
		s.t.Errorf("the tree did not stop within %v", within)
	}
}

// loop returns a watermark added to the probes.
func (s *stack) loop(cfg readiness.WatermarkConfig) *readiness.Watermark {
	s.t.Helper()
	w, err := readiness.NewWatermark(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.probes.AddLoop(w); err != nil {
		s.t.Fatal(err)
	}
	return w
}

// add adds a worker to the tree.
func (s *stack) add(name string, svc suture.Service) {
	s.t.Helper()
	if err := s.tree.Add(name, svc); err != nil {
		s.t.Fatal(err)
	}
}

// consumerConfig is a consumer of stream with short windows: reads block
// 50ms, the backlog is polled every 50ms, entries are redelivered after
// 3s. Its watermark (stall window 500ms, the other rules at their
// defaults, each opt applied) is added to the probes.
func (s *stack) consumerConfig(rdb redis.UniversalClient, stream string, h consumer.Handler, opts ...func(*readiness.WatermarkConfig)) consumer.Config {
	wcfg := readiness.WatermarkConfig{Name: "rolling_service@" + stream, StallWindow: 500 * time.Millisecond}
	for _, o := range opts {
		o(&wcfg)
	}
	wm := s.loop(wcfg)
	return consumer.Config{Catalog: platform.Catalog(),
		Client: rdb, Stream: stream, CatalogStream: platform.StreamWallet, Group: "rolling_service", Consumer: "pod-a",
		Handlers: map[event.Type]consumer.Handler{platform.BetSettledConfirmed: h, platform.BetRolledBackConfirmed: h},
		Block:    50 * time.Millisecond, InfoInterval: 50 * time.Millisecond,
		HandlerTimeout: 2 * time.Second, ReclaimIdle: 3 * time.Second,
		Retry:     consumer.RetryPolicy{Attempts: 2, Backoff: backoff.Exponential{Initial: time.Millisecond, Max: 5 * time.Millisecond}},
		Watermark: wm, Registerer: s.reg, Logger: s.log,
	}
}

// consumer builds a consumer from cfg and adds it to the tree as
// "consumer".
func (s *stack) consumer(cfg consumer.Config) *consumer.Consumer {
	s.t.Helper()
	c, err := consumer.New(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.add("consumer", c)
	return c
}

// subject names the check a row is about.
type subject struct {
	loop    *readiness.Watermark
	job     *readiness.JobHealth
	service string // a worker of the tree
	tree    bool   // the tree's own check
}

// observe reads the probes, the subject and the metrics.
func (s *stack) observe(sub subject) observation {
	s.t.Helper()
	var o observation
	o.live, _ = s.get("/live")
	var body map[string]string
	o.ready, body = s.get("/ready?full=1")
	o.status = "—"
	switch {
	case sub.loop != nil:
		st := sub.loop.Status()
		o.reason, o.status = st.Reason, "loop: "+st.State.String()
	case sub.job != nil:
		st := sub.job.Status()
		o.reason, o.status = st.Reason, "job: "+st.State.String()
	case sub.service != "":
		st, ok := s.tree.Status(sub.service)
		if !ok {
			s.t.Fatalf("no worker %q", sub.service)
		}
		o.reason, o.status = st.Reason, "service: "+st.State.String()
	case sub.tree:
		o.reason = body["supervisor/"+s.tree.String()]
	}
	var err error
	if o.metrics, err = s.reg.Gather(); err != nil {
		s.t.Fatal(err)
	}
	return o
}

// get answers a probe request.
func (s *stack) get(target string) (int, map[string]string) {
	rec := httptest.NewRecorder()
	s.probes.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	body := map[string]string{}
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Code, body
}

// readyBody returns the /ready?full=1 body.
func (s *stack) readyBody() map[string]string {
	_, body := s.get("/ready?full=1")
	return body
}

// envelope returns a valid schema_version 2 event.
func envelope(id string, typ event.Type, agg string) event.Envelope {
	return event.Envelope{EventID: id, EventType: typ, SchemaVersion: 2, BrandID: 3,
		OccurredAt: time.Now(), AggregateID: agg, Payload: []byte("{}")}
}

// publish appends envelopes to stream.
func publish(t *testing.T, rdb redis.UniversalClient, stream string, envs ...event.Envelope) {
	t.Helper()
	for _, e := range envs {
		fields, err := event.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: fields}).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// publishRaw appends raw fields, as a broken producer would.
func publishRaw(t *testing.T, rdb redis.UniversalClient, stream string, fields map[string]any) {
	t.Helper()
	if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: fields}).Err(); err != nil {
		t.Fatal(err)
	}
}
