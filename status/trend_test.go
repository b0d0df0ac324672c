package status_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/status"
)

// trendWorld is one loop sampled by a page whose charts keep a minute at
// 10s a sample (7 samples).
func trendWorld(t *testing.T) (*status.Handler, *readiness.Watermark, *testkit.FakeClock) {
	t.Helper()
	clk := testkit.NewClock()
	probes := newProbes(t)
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "promotion_service@events:{wallet}", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := probes.AddLoop(wm); err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, status.Config{Probes: probes, Now: clk.Now, TrendInterval: 10 * time.Second, TrendWindow: time.Minute})
	return h, wm, clk
}

func loopTrend(t *testing.T, h *status.Handler) *status.Trend {
	t.Helper()
	s := snapshot(t, h)
	if len(s.Loops) != 1 {
		t.Fatalf("%d loops", len(s.Loops))
	}
	return s.Loops[0].Trend
}

// TestTrendRateAndBacklog: each point's rate is the work done since the
// point before over the time between them; an unknown backlog is null;
// the ring keeps the window and drops what is older.
func TestTrendRateAndBacklog(t *testing.T) {
	h, wm, clk := trendWorld(t)
	if tr := loopTrend(t, h); tr != nil {
		t.Fatalf("a trend before any sample: %+v", tr)
	}
	h.Record() // backlog unknown, nothing done
	wm.ProgressBy("1-50", 50)
	wm.SetBacklog(100)
	clk.Advance(10 * time.Second)
	h.Record()
	wm.BacklogUnknown()
	wm.Progress("1-51") // one unit
	wm.ProgressBy("1-70", 19)
	clk.Advance(10 * time.Second)
	h.Record()

	tr := loopTrend(t, h)
	if tr == nil || tr.IntervalSeconds != 10 || len(tr.Points) != 3 {
		t.Fatalf("trend = %+v, want 3 points at 10s", tr)
	}
	p := tr.Points
	if p[0].Rate != nil || p[0].Backlog != nil {
		t.Errorf("first point: rate %v backlog %v, want both null", p[0].Rate, p[0].Backlog)
	}
	if p[1].Rate == nil || *p[1].Rate != 5 || p[1].Backlog == nil || *p[1].Backlog != 100 {
		t.Errorf("second point: %+v, want rate 5/s, backlog 100", p[1])
	}
	if p[2].Rate == nil || *p[2].Rate != 2 || p[2].Backlog != nil {
		t.Errorf("third point: %+v, want rate 2/s, backlog null", p[2])
	}
	if !p[2].At.Equal(p[0].At.Add(20 * time.Second)) {
		t.Errorf("points at %v and %v, want 20s apart", p[0].At, p[2].At)
	}

	for i := range 20 {
		wm.SetBacklog(int64(i))
		clk.Advance(10 * time.Second)
		h.Record()
	}
	tr = loopTrend(t, h)
	if len(tr.Points) != 7 {
		t.Fatalf("%d points after 23 samples, want the window's 7", len(tr.Points))
	}
	if b := tr.Points[0].Backlog; b == nil || *b != 13 {
		t.Errorf("oldest point kept has backlog %v, want 13 (the 17th sample)", b)
	}
	if r := tr.Points[0].Rate; r == nil || *r != 0 {
		t.Errorf("oldest point kept: rate %v, want 0 (it had a point before it)", r)
	}
}

// TestTrendChartsOnThePage: the loop's row draws the rate and the backlog
// as inline SVG, with a caption giving each maximum, and gaps where the
// backlog was unknown.
func TestTrendChartsOnThePage(t *testing.T) {
	h, wm, clk := trendWorld(t)
	if body := page(t, h); !strings.Contains(body, "no sample yet") {
		t.Error("a loop without samples shows no placeholder")
	}
	h.Record()
	for i, backlog := range []int64{40, -1, 30, 20} { // -1: unknown
		if backlog < 0 {
			wm.BacklogUnknown()
		} else {
			wm.SetBacklog(backlog)
		}
		wm.ProgressBy("1-"+string(rune('a'+i)), 10*(i+1))
		clk.Advance(10 * time.Second)
		h.Record()
	}
	body := page(t, h)
	for _, want := range []string{
		`<th class="trend">last 1 min: done/s, backlog</th>`,
		`<svg class="spark rate" width="132" height="26"`,
		`<title>done per second, last 1 min: max 4/s</title>`,
		`<svg class="spark backlog"`,
		`<title>backlog, last 1 min: max 40</title>`,
		`<circle `, // the backlog of 40, alone between an unknown start and an unknown
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if n := strings.Count(body, "<polyline "); n != 2 {
		t.Errorf("%d polylines, want 2: the rate's, and the backlog's after its gap", n)
	}
}

// TestTrendsOff: with a negative TrendInterval the page has no chart
// column and Run returns at once.
func TestTrendsOff(t *testing.T) {
	probes := newProbes(t)
	h := newHandler(t, status.Config{Probes: probes, TrendInterval: -1})
	h.Record()
	if err := h.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if body := page(t, h); strings.Contains(body, `class="trend"`) {
		t.Error("a chart column with the charts off")
	}
	for _, bad := range []status.Config{{TrendInterval: time.Minute, TrendWindow: time.Second},
		{TrendInterval: time.Millisecond}, {TrendWindow: 5 * time.Second}, {TrendInterval: time.Second, TrendWindow: time.Hour}} {
		if _, err := status.New(bad); err == nil {
			t.Errorf("TrendInterval %v, TrendWindow %v accepted", bad.TrendInterval, bad.TrendWindow)
		}
	}
}

// TestRunSamplesUntilCancelled: Run samples at once and then every
// interval, and returns when its context ends.
func TestRunSamplesUntilCancelled(t *testing.T) {
	probes := newProbes(t)
	wm, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: "relay/headway_outbox"})
	if err != nil {
		t.Fatal(err)
	}
	if err := probes.AddLoop(wm); err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, status.Config{Probes: probes, TrendInterval: time.Second, TrendWindow: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	testkit.Eventually(t, 10*time.Second, "a sample at once, then one a second later", func() bool {
		tr := snapshot(t, h).Loops[0].Trend
		return tr != nil && len(tr.Points) >= 2
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
