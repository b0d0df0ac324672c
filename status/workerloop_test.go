package status_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/status"
	"github.com/headwaylabs/headway/supervisor"
)

// TestWorkerShowsItsLoop: a running, ready worker whose loop is stalled
// says so in its row, with the loop's reason and a link to the loop's row;
// a worker whose loop is fine shows the loop's state and no reason; a
// worker without a loop shows none.
func TestWorkerShowsItsLoop(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	mustAdd(t, w.tree, "auditor", blocker{})
	mustAdd(t, w.tree, "roller", blocker{})
	mustAdd(t, w.tree, "typo", blocker{})
	for _, name := range []string{"auditor", "roller", "typo"} {
		waitForState(t, w.tree, name, supervisor.ServiceRunning)
	}
	h := newHandler(t, status.Config{Title: "wallet-consumer", Tree: w.tree, Probes: w.probes, Now: w.clk.Now,
		WorkerLoops: map[string]string{"auditor": "audit", "roller": "wallet/rolling", "typo": "no-such-loop"}})

	workers := map[string]status.Worker{}
	for _, wk := range snapshot(t, h).Workers {
		workers[wk.Name] = wk
	}
	auditor := workers["auditor"]
	if auditor.State != "running" || !auditor.Ready {
		t.Fatalf("auditor is %s, ready %v: the fixture needs a running, ready worker", auditor.State, auditor.Ready)
	}
	if l := auditor.Loop; l == nil || l.Name != "audit" || l.State != "stalled" || l.Ready ||
		l.Tone != status.ToneBad || !strings.HasPrefix(l.Reason, "stalled: ") {
		t.Errorf("auditor's loop: %+v, want audit, stalled, not ready, bad", l)
	}
	if l := workers["roller"].Loop; l == nil || l.State != "progressing" || !l.Ready || l.Tone != status.ToneGood {
		t.Errorf("roller's loop: %+v, want wallet/rolling, progressing", l)
	}
	if l := workers["typo"].Loop; l == nil || l.State != "unknown" || l.Tone != status.ToneOff {
		t.Errorf("typo's loop: %+v, want unknown", l)
	}
	if l := workers["relay-worker"].Loop; l != nil {
		t.Errorf("relay-worker has no loop, shows %+v", l)
	}

	body := page(t, h)
	r := row(body, "auditor")
	for _, want := range []string{
		badge(status.ToneGood, "running"),
		`<a class="loop" href="#loop-audit" title="audit">loop ` + badge(status.ToneBad, "stalled") + `</a>`,
		`<span class="loopreason">loop <a href="#loop-audit">audit</a>: stalled: `,
	} {
		if !strings.Contains(r, want) {
			t.Errorf("row of worker auditor lacks %q:\n%s", want, r)
		}
	}
	if !strings.Contains(body, `<tr id="loop-audit">`) {
		t.Error("the loop's row has no anchor loop-audit")
	}
	// The name is escaped in the link (a browser decodes it to find the row).
	r = row(body, "roller")
	if !strings.Contains(r, `href="#loop-wallet%2frolling"`) || !strings.Contains(r, badge(status.ToneGood, "progressing")) {
		t.Errorf("row of worker roller lacks its loop's link and state:\n%s", r)
	}
	if strings.Contains(r, "loopreason") {
		t.Errorf("row of worker roller repeats a good loop's reason:\n%s", r)
	}
	if r := row(body, "relay-worker"); strings.Contains(r, "loop") {
		t.Errorf("row of worker relay-worker shows a loop:\n%s", r)
	}
}

func TestWorkerLoopsValidate(t *testing.T) {
	t.Parallel()
	for _, links := range []map[string]string{{"rolling": ""}, {"": "audit"}} {
		if _, err := status.New(status.Config{WorkerLoops: links}); !errors.Is(err, status.ErrInvalidConfig) {
			t.Errorf("WorkerLoops %v: New = %v, want ErrInvalidConfig", links, err)
		}
	}
}

// reporter is a worker that reports into a watermark, as consumers and
// relays do: the supervisor knows its loop.
type reporter struct {
	blocker
	wm *readiness.Watermark
}

func (r reporter) Watermark() *readiness.Watermark { return r.wm }

// A worker that reports into a watermark is linked to its loop without
// Config.WorkerLoops: the supervisor names it.
func TestWorkerLinkedToTheLoopItReports(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	var audit *readiness.Watermark
	for _, l := range w.probes.Loops() {
		if l.Name() == "audit" {
			audit = l
		}
	}
	if audit == nil {
		t.Fatal("the fixture has no loop audit")
	}
	mustAdd(t, w.tree, "auditor", reporter{wm: audit})
	waitForState(t, w.tree, "auditor", supervisor.ServiceRunning)
	if st, _ := w.tree.Status("auditor"); st.Loop != "audit" {
		t.Fatalf("ServiceStatus.Loop = %q, want audit", st.Loop)
	}
	h := newHandler(t, status.Config{Title: "wallet-consumer", Tree: w.tree, Probes: w.probes, Now: w.clk.Now})
	for _, wk := range snapshot(t, h).Workers {
		if wk.Name != "auditor" {
			continue
		}
		if want := audit.Status().State.String(); wk.Loop == nil || wk.Loop.Name != "audit" || wk.Loop.State != want {
			t.Errorf("auditor's loop: %+v, want audit, %s", wk.Loop, want)
		}
		return
	}
	t.Fatal("no worker auditor on the page")
}
