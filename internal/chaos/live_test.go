package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
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
	spells   map[string]*liveSpell // by worker and phase
	order    []string
}

// liveSpell is the failures of one worker in one phase: how many, from
// when to when (seconds into the run), and the first answer.
type liveSpell struct {
	n           int
	first, last float64
	answer      string
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
				l.record(p.name+" while frozen: "+phase, status, body, timedOut)
			}
			l.mu.Unlock()
		}
	}
}

func (l *livePoller) record(key string, status int, body string, timedOut bool) {
	at := time.Since(l.start).Seconds()
	sp := l.spells[key]
	if sp == nil {
		answer := fmt.Sprintf("%d %s", status, strings.Join(strings.Fields(body), " "))
		if timedOut {
			answer = "no answer within 1s"
		}
		sp = &liveSpell{first: at, answer: answer}
		if l.spells == nil {
			l.spells = map[string]*liveSpell{}
		}
		l.spells[key] = sp
		l.order = append(l.order, key)
	}
	sp.n++
	sp.last = at
}

// summary describes the failures, one line per worker and phase.
func (l *livePoller) summary() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, k := range l.order {
		sp := l.spells[k]
		out = append(out, fmt.Sprintf("%s: %d failed polls, t=%.1fs to %.1fs; first: %s", k, sp.n, sp.first, sp.last, sp.answer))
	}
	return out
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
