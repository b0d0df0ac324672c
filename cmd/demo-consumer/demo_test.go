package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
)

// The end-to-end tests build the demo and run it as a process, in embedded
// mode, the way a user's first `go run ./cmd/demo-consumer` does.

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "headway-demo-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "demo-consumer")
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func build(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// demo is a running demo process.
type demo struct {
	cmd  *exec.Cmd
	base string // http://host:port
	mu   sync.Mutex
	logs bytes.Buffer
	out  testkit.SyncBuffer // stdout: spans with -trace-stdout
	done chan error
}

func startDemo(t *testing.T, args ...string) *demo {
	t.Helper()
	return startDemoEnv(t, nil, args...)
}

// startDemoEnv starts the demo with env added to its environment.
func startDemoEnv(t *testing.T, env []string, args ...string) *demo {
	t.Helper()
	build(t)
	cmd := exec.Command(binary, append([]string{"-listen", "127.0.0.1:0", "-rate", "100", "-data-dir", t.TempDir()}, args...)...)
	cmd.Env = append(append(os.Environ(), "REDIS_URL=", "DATABASE_URL=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="), env...)
	d := &demo{cmd: cmd, done: make(chan error, 1)}
	cmd.Stdout = &d.out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			d.mu.Lock()
			d.logs.Write(line)
			d.logs.WriteByte('\n')
			d.mu.Unlock()
			var rec struct{ Msg, HTTP string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "demo running" {
				addr <- strings.TrimSuffix(rec.HTTP, "/status")
			}
		}
		d.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("demo logs:\n%s", d.log())
		}
	})
	select {
	case d.base = <-addr:
	case <-time.After(60 * time.Second):
		t.Fatalf("the demo did not start within 60s; logs:\n%s", d.log())
	}
	return d
}

func (d *demo) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

func (d *demo) get(t *testing.T, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.base+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// counter sums the samples of a metric whose labels contain every one of
// match (label="value" strings) in a Prometheus text scrape.
func counter(scrape, metric string, match ...string) float64 {
	var sum float64
	for _, line := range strings.Split(scrape, "\n") {
		if !strings.HasPrefix(line, metric+"{") && !strings.HasPrefix(line, metric+" ") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(line, m)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func TestDemoEventsFlowAndItShutsDownCleanly(t *testing.T) {
	d := startDemo(t)
	var scrape string
	testkit.Eventually(t, 30*time.Second, "both consumers applying relayed events", func() bool {
		_, scrape = d.get(t, "/metrics")
		return counter(scrape, "headway_outbox_published_total") >= 50 &&
			counter(scrape, "headway_consumer_entries_total", `group="rolling_service"`, `outcome="applied"`) >= 20 &&
			counter(scrape, "headway_consumer_entries_total", `group="promotion_service"`, `outcome="applied"`) >= 20
	})
	// Producer-only types reach the consumers and are acknowledged as
	// unhandled, never dead-lettered.
	testkit.Eventually(t, 30*time.Second, "producer-only types counted as unhandled", func() bool {
		_, scrape = d.get(t, "/metrics")
		return counter(scrape, "headway_consumer_entries_total", `outcome="unhandled"`) > 0
	})
	if n := counter(scrape, "headway_consumer_dead_lettered_total"); n != 0 {
		t.Fatalf("%v entries dead-lettered without any fault injected", n)
	}
	testkit.Eventually(t, 20*time.Second, "/ready 200", func() bool { code, _ := d.get(t, "/ready"); return code == 200 })
	if code, body := d.get(t, "/ready?full=1"); code != 200 || !strings.Contains(body, `"loop/rolling_service@events:{wallet}": "OK"`) {
		t.Fatalf("/ready?full=1 = %d %s", code, body)
	}
	if code, _ := d.get(t, "/live"); code != 200 {
		t.Fatalf("/live = %d", code)
	}
	code, page := d.get(t, "/status")
	for _, want := range []string{"wallet-producer", "relay", "rolling", "promotion", "reconcile"} {
		if code != 200 || !strings.Contains(page, want) {
			t.Fatalf("/status (%d) does not show %s", code, want)
		}
	}

	// promtool lints the scrape when it is installed (.ci/run installs it).
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(scrape)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	} else if os.Getenv("HEADWAY_REQUIRE_TOOLS") != "" {
		t.Fatal("promtool is required (HEADWAY_REQUIRE_TOOLS) and not installed")
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		d.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not stop within 30s of SIGTERM")
	}
	if !strings.Contains(d.log(), "demo stopped cleanly") {
		t.Fatal("no clean-shutdown log line")
	}
}

// TestDemoOnSentinelAndCluster: the demo runs unchanged on a REDIS_URL of
// the Sentinel and of the Cluster form: both consumers apply relayed
// events and the demo is ready.
func TestDemoOnSentinelAndCluster(t *testing.T) {
	for name, url := range map[string]func(t *testing.T) string{ // what the demo logs as its Redis, by form
		"sentinel": func(t *testing.T) string {
			primary := redistest.StartServer(t, redistest.ServerOptions{})
			return redistest.SentinelURL("events", redistest.StartSentinels(t, "events", primary.Addr, 3))
		},
		"cluster": func(t *testing.T) string { return redistest.StartCluster(t).URL() },
	} {
		t.Run(name, func(t *testing.T) {
			d := startDemo(t, "-redis-url", url(t))
			want := map[string]string{"sentinel": `"addr":"FailoverClient"`, "cluster": `"addr":"cluster 127.0.0.1:`}[name]
			if !strings.Contains(d.log(), `"msg":"using Redis"`) || !strings.Contains(d.log(), want) {
				t.Fatalf("the demo does not say it uses the %s client (%s):\n%s", name, want, d.log())
			}
			testkit.Eventually(t, 40*time.Second, "both consumers applying relayed events", func() bool {
				_, scrape := d.get(t, "/metrics")
				return counter(scrape, "headway_consumer_entries_total", `group="rolling_service"`, `outcome="applied"`) >= 20 &&
					counter(scrape, "headway_consumer_entries_total", `group="promotion_service"`, `outcome="applied"`) >= 20
			})
			testkit.Eventually(t, 20*time.Second, "/ready 200", func() bool { code, _ := d.get(t, "/ready"); return code == 200 })
		})
	}
}

// TestDemoExportsSpans: with -trace-stdout the demo writes the spans of an
// event's path — the wallet's write, the relay's send, the consumers'
// process spans — to stdout, the process spans in the write's trace; with
// OTEL_EXPORTER_OTLP_ENDPOINT it posts them to that OTLP/HTTP endpoint.
func TestDemoExportsSpans(t *testing.T) {
	var posts atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(collector.Close)
	d := startDemoEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL, "OTEL_BSP_SCHEDULE_DELAY=200"}, "-trace-stdout")
	type span struct {
		Name        string
		SpanContext struct{ TraceID string }
		Parent      struct{ SpanID string }
	}
	var spans []span
	defer func() {
		if t.Failed() {
			out := d.out.String()
			t.Logf("%d spans read; stdout starts:\n%s", len(spans), out[:min(len(out), 3000)])
		}
	}()
	testkit.Eventually(t, 30*time.Second, "write, send and process spans on stdout, process in the write's trace", func() bool {
		spans = spans[:0]
		dec := json.NewDecoder(strings.NewReader(d.out.String()))
		for {
			var s span
			if dec.Decode(&s) != nil {
				break
			}
			spans = append(spans, s)
		}
		writes, sends := map[string]bool{}, false
		for _, s := range spans {
			sends = sends || s.Name == "send"
			if strings.HasPrefix(s.Name, "wallet ") {
				writes[s.SpanContext.TraceID] = true
			}
		}
		for _, s := range spans {
			if s.Name == "process events:{wallet}" && writes[s.SpanContext.TraceID] && sends {
				return true
			}
		}
		return false
	})
	testkit.Eventually(t, 10*time.Second, "spans posted to the OTLP endpoint", func() bool { return posts.Load() > 0 })
}

func TestDemoHungHandlerMakesItNotReadyButLive(t *testing.T) {
	const window = 3 * time.Second
	d := startDemo(t, "-fault-hang", "promotion", "-stall-window", window.String())
	testkit.Eventually(t, 30*time.Second, "rolling applying events", func() bool {
		_, scrape := d.get(t, "/metrics")
		return counter(scrape, "headway_consumer_entries_total", `group="rolling_service"`, `outcome="applied"`) >= 20
	})
	// The promotion consumer's first handler call hangs; its watermark has
	// backlog and no progress, so it stalls once the window has passed.
	var body string
	testkit.Eventually(t, window+15*time.Second, "/ready 503 naming the promotion consumer as stalled", func() bool {
		var code int
		code, body = d.get(t, "/ready?full=1")
		return code == 503 && regexp.MustCompile(`"loop/promotion_service@events:\{wallet\}": "stalled`).MatchString(body)
	})
	if !strings.Contains(body, `"loop/rolling_service@events:{wallet}": "OK"`) {
		t.Fatalf("the rolling consumer should stay ready: %s", body)
	}
	for range 3 {
		if code, _ := d.get(t, "/live"); code != 200 {
			t.Fatalf("/live = %d while a handler hangs; a restart would not help", code)
		}
	}
}

func TestDemoFaultsAreDeadLetteredAndCounted(t *testing.T) {
	d := startDemo(t, "-fault-legacy", "0.05", "-fault-malformed", "0.05", "-fault-mismatch", "0.05")
	testkit.Eventually(t, 40*time.Second, "every fault class dead-lettered by both consumers", func() bool {
		_, s := d.get(t, "/metrics")
		for _, g := range []string{"rolling_service", "promotion_service"} {
			for _, r := range []string{"legacy_schema", "malformed", "brand_mismatch"} {
				if counter(s, "headway_consumer_dead_lettered_total", `group="`+g+`"`, `reason="`+r+`"`) == 0 {
					return false
				}
			}
		}
		return counter(s, "event_legacy_schema_total", `consumer="rolling_service"`) > 0
	})
	// Under the default policy (notice) legacy events are shown beside
	// the consumers' checks, which stay ready.
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last /ready?full=1: %s", last)
		}
	}()
	testkit.Eventually(t, 20*time.Second, "ready, with the legacy notice of both consumers", func() bool {
		code, body := d.get(t, "/ready?full=1")
		last = strconv.Itoa(code) + " " + body
		return code == 200 && strings.Contains(body, `"notice/loop/rolling_service@events:{wallet}": "legacy_schema`) &&
			strings.Contains(body, `"notice/loop/promotion_service@events:{wallet}": "legacy_schema`)
	})
}

// TestDemoRetentionHeldBySlowGroup: with the promotion consumer slowed
// behind the producer, the retention job trims only what both groups
// acknowledged: the stream goes over its bound, held by promotion_service,
// while nothing is lost; the job itself stays ready.
func TestDemoRetentionHeldBySlowGroup(t *testing.T) {
	d := startDemo(t, "-fault-slow", "promotion=300ms", "-retention-min-age", "1ms", "-retention-max-length", "30",
		"-retention-interval", "200ms", "-stall-window", "1m")
	var s string
	testkit.Eventually(t, 40*time.Second, "the wallet stream over its bound, held by promotion_service, some of it trimmed", func() bool {
		_, s = d.get(t, "/metrics")
		return counter(s, "headway_retention_over_bound", `stream="events:{wallet}"`, `kind="stream"`) == 1 &&
			counter(s, "headway_retention_held_entries", `group="promotion_service"`) > 0 &&
			counter(s, "headway_retention_trimmed_entries_total", `stream="events:{wallet}"`) > 0
	})
	if n := counter(s, "headway_consumer_lost_to_trim_total"); n != 0 {
		t.Errorf("lost_to_trim_total = %v, want 0: retention trimmed what a group had not acknowledged", n)
	}
	if n := counter(s, "headway_retention_trimmed_unread_entries_total"); n != 0 {
		t.Errorf("trimmed_unread_entries_total = %v, want 0 (TrimUnread is off)", n)
	}
	if !strings.Contains(d.log(), `stream over its retention bound`) {
		t.Error("no log line saying the stream is over its bound")
	}
	if _, body := d.get(t, "/ready?full=1"); !strings.Contains(body, `"job/retention:events:{wallet}": "OK"`) ||
		!strings.Contains(body, `"job/retention:events:{wallet}:dlq": "OK"`) {
		t.Errorf("the retention jobs are not ready: %s", body)
	}
}

func TestDemoAlertPolicyFlag(t *testing.T) {
	lookup := func(string) (string, bool) { return "", false }
	c, err := parseConfig([]string{"-alert-policy", "hold", "-alert-window", "1m"}, lookup, io.Discard)
	if err != nil || c.alertPolicy != consumer.AlertHold || c.alertWindow != time.Minute {
		t.Errorf("-alert-policy hold -alert-window 1m: %+v %v", c.alertPolicy, err)
	}
	if c, err := parseConfig(nil, lookup, io.Discard); err != nil || c.alertPolicy != consumer.AlertNotice {
		t.Errorf("default policy: %q %v, want notice", c.alertPolicy, err)
	}
	for _, bad := range [][]string{{"-alert-policy", "page"}, {"-alert-window", "0s"}} {
		if _, err := parseConfig(bad, lookup, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestStatusPageInHeadlessChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("HEADWAY_REQUIRE_TOOLS") != "" {
			t.Fatal("chromium is required (HEADWAY_REQUIRE_TOOLS) and not installed")
		}
		t.Skip("chromium is not installed")
	}
	d := startDemo(t, "-fault-hostile")
	testkit.Eventually(t, 30*time.Second, "the hostile entry judged", func() bool {
		_, s := d.get(t, "/status?format=json")
		return strings.Contains(s, "onerror=alert(1)")
	})
	dir := t.TempDir()
	shot := filepath.Join(dir, "status.png")
	browser := func(extra ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1400,1000"}, extra...)
		out, err := exec.CommandContext(ctx, chromium, append(args, d.base+"/status")...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", extra, err)
		}
		return out
	}
	dom := string(browser("--dump-dom"))
	for _, want := range []string{"wallet-producer", "relay", "rolling", "promotion", "reconcile",
		"rolling_service@events:{wallet}", "promotion_service@events:{wallet}", "relay/headway_outbox"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page does not show %s", want)
		}
	}
	// Each loop's trend charts (the service samples from its start).
	if n := strings.Count(dom, `<svg class="spark rate"`); n < 4 {
		t.Errorf("%d rate charts on the rendered page, want one per loop (4)", n)
	}
	// The markup in the event type is text in the rendered DOM: escaped when
	// serialised, never an element.
	if !strings.Contains(dom, "&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;H") {
		t.Errorf("the hostile event type is not shown as escaped text")
	}
	if regexp.MustCompile(`<img[^>]*onerror`).MatchString(dom) || strings.Contains(dom, "<b>H") {
		t.Errorf("the hostile event type became markup in the page")
	}
	browser("--screenshot=" + shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 600 {
		t.Fatalf("screenshot is %v", b)
	}
	if out := os.Getenv("HEADWAY_SCREENSHOT"); out != "" {
		if b, err := os.ReadFile(shot); err == nil {
			_ = os.WriteFile(out, b, 0o644)
		}
	}
}
