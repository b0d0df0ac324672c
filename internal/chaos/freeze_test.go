package chaos_test

import (
	"sync"
	"testing"
	"time"

	"github.com/headwaylabs/headway/internal/faultproxy"
)

// freezer freezes PostgreSQL and Redis (the faultproxies the workers talk
// through) on a schedule until stopped: after a first pause, PostgreSQL
// for pgFor, a short pause, Redis for redisFor, then a long quiet spell
// in which the system catches up, and again. A zero duration skips that
// freeze. The harness's own connections go around the proxies.
type freezer struct {
	t                 *testing.T
	pg, redis         *faultproxy.Proxy
	pgFor, redisFor   time.Duration
	first, gap, quiet time.Duration
	start             time.Time

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu                    sync.Mutex
	pgFrozen, redisFrozen time.Duration // in all
	pgCount, redisCount   int
}

func (f *freezer) run() {
	defer close(f.done)
	if !f.wait(f.first) {
		return
	}
	for {
		if !f.hold(f.pg, f.pgFor, "PostgreSQL", &f.pgFrozen, &f.pgCount) || !f.wait(f.gap) ||
			!f.hold(f.redis, f.redisFor, "Redis", &f.redisFrozen, &f.redisCount) || !f.wait(f.quiet) {
			return
		}
	}
}

// wait sleeps for d (the schedule, not synchronisation); false when the
// freezer was stopped meanwhile.
func (f *freezer) wait(d time.Duration) bool {
	select {
	case <-f.stop:
		return false
	case <-time.After(d):
		return true
	}
}

// hold freezes p for d, or until stopped, and adds the time to total.
func (f *freezer) hold(p *faultproxy.Proxy, d time.Duration, what string, total *time.Duration, count *int) bool {
	if d <= 0 {
		return true
	}
	from := time.Now()
	p.Freeze()
	f.t.Logf("t=%.1fs %s frozen", from.Sub(f.start).Seconds(), what)
	ok := f.wait(d)
	p.Thaw()
	f.t.Logf("t=%.1fs %s thawed after %.1fs", time.Since(f.start).Seconds(), what, time.Since(from).Seconds())
	f.mu.Lock()
	*total += time.Since(from)
	*count++
	f.mu.Unlock()
	return ok
}

// finish stops the schedule, thaws whatever is frozen and returns the
// time each dependency was frozen in all. It may be called again.
func (f *freezer) finish() (pg, redis time.Duration) {
	f.stopOnce.Do(func() { close(f.stop) })
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pgFrozen, f.redisFrozen
}
