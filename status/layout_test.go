package status_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/readiness"
	"github.com/headwaylabs/headway/status"
	"github.com/headwaylabs/headway/supervisor"
)

// measure is appended to the rendered page for the layout test: it
// writes into the DOM every table header cell that ends beyond the right
// edge of the window, and whether the page scrolls sideways. The page
// itself runs no script (its policy allows none); the test serves a copy.
const measure = `<script>
(function () {
  var root = document.documentElement, out = [];
  document.querySelectorAll("th").forEach(function (th) {
    var r = th.getBoundingClientRect();
    if (r.right > root.clientWidth + 0.5) { out.push(th.textContent + " ends at " + Math.round(r.right)); }
  });
  if (root.scrollWidth > root.clientWidth) { out.push("page is " + root.scrollWidth + "px wide"); }
  var drawn = 0;
  document.querySelectorAll("svg.spark").forEach(function (svg) {
    var r = svg.getBoundingClientRect();
    if (Math.round(r.width) === 132 && Math.round(r.height) === 26 && svg.querySelector("polyline, circle")) { drawn++; }
  });
  var p = document.createElement("pre");
  p.id = "layout";
  p.setAttribute("data-width", String(root.clientWidth));
  p.setAttribute("data-charts", String(drawn));
  p.textContent = out.length ? out.join("\n") : "fits";
  document.body.appendChild(p);
})();
</script>`

// longWorld is a process whose rows have the names, reasons and errors of
// a real service, long ones included.
func longWorld(t *testing.T) *status.Handler {
	t.Helper()
	clk := testkit.NewClock()
	start := clk.Now()
	probes := newProbes(t)
	loop := func(name string) *readiness.Watermark {
		l, err := readiness.NewWatermark(readiness.WatermarkConfig{Name: name, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := probes.AddLoop(l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	rolling := loop("rolling_service@events:{wallet}")
	promotion := loop("promotion_service@events:{wallet}")
	settlement := loop("settlement_service@events:{bet-settlement}")
	relay := loop("relay/headway_outbox")
	job := func(name string, every time.Duration) *readiness.JobHealth {
		j, err := readiness.NewJobHealth(readiness.JobHealthConfig{Name: name, Interval: every, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := probes.AddJob(j); err != nil {
			t.Fatal(err)
		}
		return j
	}
	prune := job("outbox-prune", 5*time.Minute)
	reconcile := job("reconcile-wallet-balances", 10*time.Minute)

	rolling.SetBacklog(1200)
	promotion.Progress("1778846400000-17")
	relay.Progress("184467440737")
	prune.Record(nil)
	clk.Advance(3 * time.Minute)
	rolling.Heartbeat()
	rolling.SetLag(7*24*time.Hour + 3*time.Hour + 25*time.Minute + 47*time.Second)
	promotion.Progress("1778846400000-18")
	promotion.SetBacklog(123456789)
	promotion.SetLag(26*time.Hour + 17*time.Minute + 3*time.Second)
	promotion.Alert("legacy_schema: brandguard: legacy schema_version 1: event 01JABCDEFGHJKMNPQRSTVWXYZ0 (BET_SETTLED_CONFIRMED_WITH_A_LONG_NAME)",
		clk.Now().Add(5*time.Minute))
	for range readiness.DefaultFailureBound {
		settlement.Fail(errors.New("dial tcp 10.0.3.4:6379: connect: connection refused; " +
			"NOPERM this user has no permissions to run the 'xreadgroup' command"))
	}
	relay.Succeed()
	relay.SetBacklog(0)
	relay.SetLag(0)
	for range readiness.DefaultJobFailures {
		reconcile.Record(errors.New("reconcile: ERROR: canceling statement due to statement timeout (SQLSTATE 57014) " +
			"while reading wallet_balances_by_brand_and_currency"))
	}
	clk.Advance(time.Hour)
	relay.Heartbeat()
	promotion.Heartbeat()

	tree := newTree(t, "wallet-consumer", probes)
	mustAdd(t, tree, "rolling", blocker{})
	mustAdd(t, tree, "promotion-with-a-long-worker-name", blocker{})
	mustAdd(t, tree, "settlement", permanent("consumer: stream \"events:{bet-settlement}\" has no consumer group "+
		"\"settlement_service\" and CreateGroup is off: create it with XGROUP CREATE"))
	serve(t, tree)
	waitForState(t, tree, "settlement", supervisor.ServiceStopped)
	h := newHandler(t, status.Config{Title: "wallet-consumer", Tree: tree, Probes: probes,
		Now: clk.Now, Started: start.Add(-49 * time.Hour), WorkerLoops: map[string]string{
			"rolling":                           "rolling_service@events:{wallet}",
			"promotion-with-a-long-worker-name": "promotion_service@events:{wallet}",
			"settlement":                        "settlement_service@events:{bet-settlement}",
		}})
	// Trends: ten samples, the rolling consumer draining a large backlog
	// fast, the promotion consumer slower.
	for i := range 10 {
		rolling.ProgressBy("", 1500*i)
		rolling.SetBacklog(int64(1_000_000 - 90_000*i))
		promotion.ProgressBy("", 7)
		clk.Advance(10 * time.Second)
		h.Record()
	}
	return h
}

// TestPageFitsA1400PixelWindow renders the page in headless Chromium at
// 1,400 by 1,000 pixels and checks that every column of every table is in
// the window, so that no column hides behind a sideways scrollbar.
func TestPageFitsA1400PixelWindow(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("HEADWAY_REQUIRE_TOOLS") != "" {
			t.Fatal("chromium is required (HEADWAY_REQUIRE_TOOLS) and not installed")
		}
		t.Skip("chromium is not installed")
	}
	body := page(t, longWorld(t))
	if !strings.Contains(body, "</body>") {
		t.Fatal("the page has no </body>")
	}
	body = strings.Replace(body, "</body>", measure+"</body>", 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--hide-scrollbars", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--window-size=1400,1000", "--dump-dom", srv.URL).Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	m := regexp.MustCompile(`(?s)<pre id="layout" data-width="(\d+)" data-charts="(\d+)">(.*?)</pre>`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no measurement in the rendered page:\n%s", out)
	}
	if m[1] != "1400" {
		t.Fatalf("the window is %spx wide, want 1400", m[1])
	}
	if m[3] != "fits" {
		t.Errorf("at 1400px the page does not fit:\n%s", m[3])
	}
	// Every loop was sampled: each draws two charts at their size, with a
	// line or a point — but the settlement loop's backlog, never known,
	// which is an empty chart.
	if m[2] != "7" {
		t.Errorf("%s trend charts drawn at 132×26 with a line, want 7 (two for each of 4 loops, less one empty)", m[2])
	}
}
