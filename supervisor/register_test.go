package supervisor

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/readiness"
)

// TestAddRegistersTheLoopOnce: a service that reports a watermark is
// registered by Add alone — its loop check and its service check — and a
// loop its caller already added to the probes is kept, not refused. A
// second watermark under a taken loop name is refused with nothing left
// behind.
func TestAddRegistersTheLoopOnce(t *testing.T) {
	cfg, h := fastConfig(t)
	start(t, cfg, h)
	mk := func(name string) *wmLoop {
		wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: name, LivenessWindow: time.Minute, StallWindow: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return &wmLoop{wm: wm}
	}

	// Only Add: the loop is registered with the worker.
	alone := mk("alone")
	if err := h.tree.Add("alone", alone); err != nil {
		t.Fatal(err)
	}
	// Registered by hand first (older code): kept.
	byHand := mk("by-hand")
	if err := h.probes.AddLoop(byHand.wm); err != nil {
		t.Fatal(err)
	}
	if err := h.tree.Add("by-hand", byHand); err != nil {
		t.Fatalf("Add of a service whose loop the caller added: %v", err)
	}
	testkit.EventuallyState(t, 5*time.Second, func() (bool, string) {
		code, body := h.ready(t)
		return code == http.StatusOK && body["loop/alone"] == "OK" && body["service/alone"] == "OK" &&
			body["loop/by-hand"] == "OK" && body["service/by-hand"] == "OK" && body["loops/live"] == "OK", ""
	})
	if n := len(h.probes.Loops()); n != 2 {
		t.Errorf("%d loops in the probes, want 2 (each once)", n)
	}

	// Another watermark under a taken loop name: refused, nothing left.
	clash := mk("alone")
	if err := h.tree.Add("clash", clash); !errors.Is(err, readiness.ErrDuplicateCheck) {
		t.Fatalf("Add with the loop name taken by another watermark = %v, want ErrDuplicateCheck", err)
	}
	if _, body := h.ready(t); body["service/clash"] != "" {
		t.Errorf("the refused worker left its check: %q", body["service/clash"])
	}
	if err := h.tree.Add("clash", mk("clash")); err != nil {
		t.Errorf("the name of a refused Add stays taken: %v", err)
	}
}
