package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/headwaylabs/headway/internal/faultproxy"
)

// livePoller GETs /live of every running relay and consumer every 250ms
// until stopped. A failure is an answer other than 200, or no answer
// within a second from a process that accepted the connection; a refused
// or reset connection is a process that is down (killed, or not yet
// listening), which the harness knows about, and is not counted.
type livePoller struct {
	procs     []*proc
	pg, redis *faultproxy.Proxy
	start     time.Time

	mu       sync.Mutex
	polls    int
	failures int
	byPhase  map[string]int
	samples  []string
}

func (l *livePoller) phase() string {
	switch pg, rd := l.pg.Frozen(), l.redis.Frozen(); {
	case pg && rd:
		return "pg+redis"
	case pg:
		return "pg"
	case rd:
		return "redis"
	}
	return "none"
}

// run polls until ctx is done.
func (l *livePoller) run(ctx context.Context) {
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, p := range l.procs {
			if p.exited() {
				continue
			}
			phase := l.phase()
			status, body, err := get(client, "http://"+p.http+"/live?full=1")
			var nerr net.Error
			timedOut := err != nil && errors.As(err, &nerr) && nerr.Timeout()
			if err != nil && !timedOut {
				continue // down or starting
			}
			l.mu.Lock()
			l.polls++
			if timedOut || status != http.StatusOK {
				l.failures++
				if l.byPhase == nil {
					l.byPhase = map[string]int{}
				}
				l.byPhase[phase]++
				if len(l.samples) < 10 {
					what := fmt.Sprintf("%d %s", status, body)
					if timedOut {
						what = "no answer within 1s"
					}
					l.samples = append(l.samples, fmt.Sprintf("t=%.1fs %s (frozen: %s): %s",
						time.Since(l.start).Seconds(), p.name, phase, what))
				}
			}
			l.mu.Unlock()
		}
	}
}

func get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return resp.StatusCode, string(b), err
}
