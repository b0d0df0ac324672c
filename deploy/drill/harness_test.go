package drill

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The harness: the demo binary, one Prometheus for the whole drill, and the
// demo processes of a case.

// freeAddr returns a free loopback address.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// buildDemo builds cmd/demo-consumer into dir and returns the binary's path
// and its -help text.
func buildDemo(t testing.TB, dir string) (string, string) {
	t.Helper()
	bin := filepath.Join(dir, "demo-consumer")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/headwaylabs/headway/cmd/demo-consumer").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/demo-consumer: %v\n%s", err, out)
	}
	help, _ := exec.Command(bin, "-help").CombinedOutput() // exits 0 or 2; the text is what counts
	return bin, string(help)
}

// prom is a running Prometheus that scrapes the targets of targetsFile.
type prom struct {
	base        string // http://127.0.0.1:port
	targetsFile string
	cmd         *exec.Cmd
	logs        *bytes.Buffer
}

// startPrometheus starts prometheus with scrape and evaluation intervals of
// 1s, rules as its only rule file and a file_sd target list the drill
// rewrites for each case, and waits for /-/ready.
func startPrometheus(t testing.TB, bin, rules string) *prom {
	t.Helper()
	dir := t.TempDir()
	p := &prom{base: "http://" + freeAddr(t), targetsFile: filepath.Join(dir, "targets.json"), logs: &bytes.Buffer{}}
	p.setTarget(t, "", "")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: drill
    file_sd_configs:
      - files: [%q]
        refresh_interval: 1s
`, rules, p.targetsFile)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+strings.TrimPrefix(p.base, "http://"), "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", tail(p.logs.String(), 40))
		}
	})
	if !poll(30*time.Second, func() bool { code, _ := httpGet(p.base + "/-/ready"); return code == 200 }) {
		t.Fatalf("prometheus did not become ready within 30s:\n%s", p.logs.String())
	}
	return p
}

// setTarget points the scrape at addr with job label job (empty: no
// target). The file is replaced by a rename, which file_sd reads whole.
func (p *prom) setTarget(t testing.TB, job, addr string) {
	t.Helper()
	groups := []map[string]any{}
	if addr != "" {
		groups = append(groups, map[string]any{"targets": []string{addr}, "labels": map[string]string{"job": job}})
	}
	b, _ := json.Marshal(groups)
	tmp := p.targetsFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.targetsFile); err != nil {
		t.Fatal(err)
	}
}

// alert is one firing alert: its name and what it is about (the loop,
// worker, job or group label), for the report.
type alert struct{ name, about string }

// aboutLabels name what an alert is about, in the order looked for.
var aboutLabels = []string{"loop", "worker", "job_name", "group", "table"}

// firing returns the alerts in state firing whose job label is job, sorted.
func (p *prom) firing(job string) ([]alert, error) {
	code, body := httpGet(p.base + "/api/v1/alerts")
	if code != 200 {
		return nil, fmt.Errorf("GET /api/v1/alerts: %d %s", code, body)
	}
	var resp struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string
				State  string
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return nil, err
	}
	var out []alert
	for _, a := range resp.Data.Alerts {
		if a.State != "firing" || a.Labels["job"] != job {
			continue
		}
		al := alert{name: a.Labels["alertname"]}
		for _, l := range aboutLabels {
			if v := a.Labels[l]; v != "" {
				al.about = l + "=" + v
				break
			}
		}
		out = append(out, al)
	}
	slices.SortFunc(out, func(a, b alert) int { return strings.Compare(a.name+" "+a.about, b.name+" "+b.about) })
	return out, nil
}

// names returns the distinct alert names of alerts, sorted.
func names(alerts []alert) []string {
	var out []string
	for _, a := range alerts {
		if !slices.Contains(out, a.name) {
			out = append(out, a.name)
		}
	}
	slices.Sort(out)
	return out
}

// scraped reports whether Prometheus has a successful scrape of job.
func (p *prom) scraped(job string) bool {
	code, body := httpGet(p.base + "/api/v1/query?query=" + fmt.Sprintf("up%%7Bjob%%3D%%22%s%%22%%7D", job))
	return code == 200 && strings.Contains(body, `"1"]`)
}

// demo is one demo process.
type demo struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
}

// startDemo starts bin with args and the environment variables env
// ("KEY=value") and waits for its "demo running" log line.
func startDemo(t testing.TB, bin string, env []string, args ...string) *demo {
	t.Helper()
	d := &demo{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	// The drill's own environment, without a brandguard mode the case did
	// not ask for.
	base := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "MULTI_BRAND_ENFORCEMENT=") })
	d.cmd.Env = append(append(base, "REDIS_URL=", "DATABASE_URL="), env...)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	running := make(chan struct{}, 1)
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			d.mu.Lock()
			d.logs.Write(sc.Bytes())
			d.logs.WriteByte('\n')
			d.mu.Unlock()
			var rec struct{ Msg string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "demo running" {
				select {
				case running <- struct{}{}:
				default:
				}
			}
		}
		_ = d.cmd.Wait()
	}()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("demo logs (last lines):\n%s", tail(d.log(), 30))
		}
	})
	select {
	case <-running:
	case <-d.done:
		t.Fatalf("the demo exited at start:\n%s", d.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("the demo did not start within 30s:\n%s", d.log())
	}
	return d
}

// stop ends the process as a rollout does: SIGTERM, and SIGKILL if it has
// not exited within 10s. A clean stop releases the relay's leased rows,
// which a SIGKILL leaves claimed for the lease's unscaled TTL.
func (d *demo) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.kill()
	}
}

// signal sends sig to the process (SIGSTOP, SIGCONT: a pause).
func (d *demo) signal(sig syscall.Signal) error { return d.cmd.Process.Signal(sig) }

// kill ends the process at once (SIGKILL), as a crash or a redeploy's
// forced stop does, and waits for it.
func (d *demo) kill() {
	_ = d.cmd.Process.Kill()
	<-d.done
}

func (d *demo) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

func httpGet(url string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// poll checks cond every 250ms until it holds (true) or within passes
// (false).
func poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// seconds formats d for the report: "12.3s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}
