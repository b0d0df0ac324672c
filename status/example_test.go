package status_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/status"
	"github.com/headwaylabs/headway/supervisor"
)

// A service mounts the status page next to its probes, on the internal
// listener, and serves it while the tree runs.
func Example() {
	// A fixed clock, so the output is the same on every run.
	now := time.Date(2026, 5, 15, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }

	probes, _ := readiness.NewProbes(readiness.ProbesConfig{})
	tree, _ := supervisor.New(supervisor.Config{
		Name:   "wallet-consumer",
		Logger: slog.New(slog.DiscardHandler),
		Probes: probes,
	})
	wm, _ := readiness.NewWatermark(readiness.WatermarkConfig{Name: "events:{wallet}/rolling", Now: clock})
	_ = probes.AddLoop(wm)
	// A consumer, supervised by the tree, reports into wm:
	wm.Progress("1778846400000-0")
	wm.SetBacklog(3)
	wm.SetLag(1500 * time.Millisecond)

	page, err := status.New(status.Config{Title: "wallet-consumer", Tree: tree, Probes: probes, Now: clock})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/live", probes.LiveHandler())
	mux.Handle("/ready", probes.ReadyHandler())
	mux.Handle("/status", page)
	// A service now runs go tree.Serve(ctx) and serves mux on its
	// internal port; until the tree serves, the page says not ready.

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status?format=json", nil))
	var s status.Snapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		panic(err)
	}
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	fmt.Println("ready:", s.Ready, s.NotReady)
	for _, l := range s.Loops {
		fmt.Printf("loop %s: %s (%s), position %s, backlog %d, lag %.1fs\n",
			l.Name, l.State, l.Tone, l.Position, *l.Backlog, *l.LagSeconds)
	}

	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	// Output:
	// 200 application/json
	// ready: false [supervisor/wallet-consumer: pending: the supervisor is not serving yet]
	// loop events:{wallet}/rolling: progressing (good), position 1778846400000-0, backlog 3, lag 1.5s
	// 200 text/html; charset=utf-8
}
