package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/internal/faultproxy"
	"github.com/headwaylabs/headway/internal/redistest"
	"github.com/headwaylabs/headway/internal/testkit"
	"github.com/headwaylabs/headway/platform"
)

// owner returns the consumer that the entry id is pending for ("" when it
// is not pending).
func owner(t *testing.T, rdb redis.UniversalClient, stream, id string) string {
	t.Helper()
	p, err := rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: stream, Group: "rolling_service",
		Start: id, End: id, Count: 1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(p) == 0 {
		return ""
	}
	return p[0].Consumer
}

// pausable returns a client of a test Redis, a client of the same server
// through a proxy the test can freeze (a process paused, or cut off), the
// proxy, and a fresh wallet stream key.
func pausable(t *testing.T) (shared, viaProxy *redis.Client, proxy *faultproxy.Proxy, stream string) {
	t.Helper()
	shared, prefix := redistest.Client(t)
	proxy, err := faultproxy.Start(shared.Options().Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	viaProxy = redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = viaProxy.Close() })
	return shared, viaProxy, proxy, walletStream(prefix)
}

// longHandlerConfig is a consumer named name whose handler counts its
// starts and then waits for release, ignoring its context (a long
// handler); it reclaims entries idle for reclaimIdle (and refreshes its
// own every reclaimIdle/3, at most 10s).
func longHandlerConfig(rdb redis.UniversalClient, stream, name string, started *atomic.Int32, release chan struct{}, reclaimIdle time.Duration) consumer.Config {
	cfg := fastConfig(rdb, stream, handlersFor(func(ctx context.Context, m *consumer.Message) error {
		started.Add(1)
		<-release // ignores ctx on purpose: a long handler
		return nil
	}))
	cfg.Consumer = name
	cfg.HandlerTimeout = 500 * time.Millisecond
	cfg.ReclaimIdle, cfg.ReclaimInterval = reclaimIdle, 50*time.Millisecond
	return cfg
}

// TestRefreshNeverTakesBackAnEntryAPeerClaimed: pod-a runs an entry and
// then stops refreshing it for longer than ReclaimIdle (here its Redis
// connection freezes, as for a process stopped by SIGSTOP or a long GC);
// pod-b claims the entry and runs it. When pod-a comes back, its refresh
// must not claim the entry back (pod-b holds it), and pod-a must report
// the entry as taken.
func TestRefreshNeverTakesBackAnEntryAPeerClaimed(t *testing.T) {
	shared, viaProxy, proxy, stream := pausable(t)
	var startedA, startedB atomic.Int32
	releaseA, releaseB := make(chan struct{}), make(chan struct{})
	closeA, closeB := sync.OnceFunc(func() { close(releaseA) }), sync.OnceFunc(func() { close(releaseB) })
	mk := func(rdb redis.UniversalClient, name string, started *atomic.Int32, release chan struct{}) consumer.Config {
		return longHandlerConfig(rdb, stream, name, started, release, time.Second) // refresh every 333ms
	}
	a := start(t, mk(viaProxy, "pod-a", &startedA, releaseA))
	t.Cleanup(closeA) // runs before the harness stops Serve
	id := publish(t, shared, stream, envelope("paused", platform.BetSettledConfirmed, "bet-1", 3, nil))[0]
	testkit.Eventually(t, 5*time.Second, "pod-a runs the entry", func() bool { return startedA.Load() == 1 })
	b := start(t, mk(shared, "pod-b", &startedB, releaseB))
	t.Cleanup(closeB)

	proxy.Freeze() // pod-a stops refreshing
	testkit.Eventually(t, 10*time.Second, "pod-b claims the entry after ReclaimIdle and runs it", func() bool {
		return startedB.Load() == 1 && owner(t, shared, stream, id) == "pod-b"
	})
	proxy.Thaw()
	taken := func() float64 { return a.counter("headway_consumer_taken_in_flight_total", nil) }
	stolen := false
	testkit.Eventually(t, 10*time.Second, "pod-a refreshes again", func() bool {
		stolen = stolen || owner(t, shared, stream, id) != "pod-b"
		return stolen || taken() == 1
	})
	if stolen {
		t.Fatalf("pod-a's refresh claimed back the entry pod-b runs (owner now %q)", owner(t, shared, stream, id))
	}
	if !strings.Contains(a.logs.String(), "claimed by another consumer") {
		t.Error("pod-a did not log the entry taken from it")
	}
	// Some more refreshes of both: the entry stays pod-b's.
	deadline := time.Now().Add(time.Second) // three refresh periods
	for time.Now().Before(deadline) {
		if o := owner(t, shared, stream, id); o != "pod-b" {
			t.Fatalf("the entry moved to %q", o)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// pod-a's handler returns first: pod-a must not acknowledge the entry
	// pod-b now runs (XACK does not check the owner).
	closeA()
	leftToPodB(t, shared, stream, id, a, b, closeB)
	if taken() != 1 {
		t.Errorf("taken_in_flight_total = %v, want 1 (counted once)", taken())
	}
}

// TestTrimmedWhileInFlightIsCountedAsLost: handlers hang while three
// batches are pending (running, prepared, read); the stream is trimmed to
// nothing; the refresh of the held entries goes on. Entries whose handlers
// then fail are lost and each is counted once; entries whose handlers apply
// them (from the copy in memory) are not lost.
func TestTrimmedWhileInFlightIsCountedAsLost(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   bool
		lost   float64
		applyN float64
	}{
		{name: "handlers fail", fail: true, lost: 150},
		{name: "handlers apply", applyN: 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := redistest.Client(t)
			stream := walletStream(prefix)
			release := make(chan struct{})
			releaseAll := sync.OnceFunc(func() { close(release) })
			cfg := fastConfig(rdb, stream, handlersFor(func(ctx context.Context, m *consumer.Message) error {
				<-release
				if tc.fail {
					return errors.New("transient")
				}
				return nil
			}))
			cfg.BatchSize = 50
			cfg.Retry.Attempts = 1
			cfg.HandlerTimeout = 500 * time.Millisecond
			// Refresh every 200ms. A reclaim pass waits for the batches in
			// flight, so the first one after the start comes only once all
			// three batches have been read.
			cfg.ReclaimIdle, cfg.ReclaimInterval = 600*time.Millisecond, time.Second
			envs := make([]event.Envelope, 200)
			for i := range envs {
				envs[i] = envelope(fmt.Sprintf("e%d", i), platform.BetSettledConfirmed, fmt.Sprintf("bet-%d", i), 3, nil)
			}
			publish(t, rdb, stream, envs...)
			h := start(t, cfg)
			t.Cleanup(releaseAll) // runs before the harness stops Serve
			testkit.Eventually(t, 10*time.Second, "three batches pending", func() bool { return h.pending() == 150 })
			if err := rdb.XTrimMaxLen(context.Background(), stream, 0).Err(); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, 5*time.Second, "the refresh after the trim", func() bool {
				return h.pending() < 150 || strings.Contains(h.logs.String(), "trimmed from the stream")
			})
			releaseAll()
			lost := func() float64 { return h.counter("headway_consumer_lost_to_trim_total", nil) }
			testkit.Eventually(t, 15*time.Second, "every entry settled: applied, or counted as lost", func() bool {
				return h.pending() == 0 && lost()+h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) >= 150
			})
			lostEntries := h.counter("headway_consumer_entries_total", map[string]string{"outcome": consumer.OutcomeLostToTrim})
			if lost() != tc.lost || lostEntries != tc.lost {
				t.Errorf("lost_to_trim_total %v, entries_total{outcome=lost_to_trim} %v; want %v", lost(), lostEntries, tc.lost)
			}
			if got := h.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied); got != tc.applyN {
				t.Errorf("applied %v, want %v", got, tc.applyN)
			}
		})
	}
}

// TestPausedProcessConfirmsOwnershipBeforeAcknowledging: as above, pod-a
// stops refreshing its entry (frozen connection) and pod-b claims it; but
// pod-a's handler returns at once when pod-a comes back, before its
// periodic refresh runs again. Its batch went unrefreshed for longer than
// ReclaimIdle/2, so pod-a refreshes it before acknowledging: it finds the
// entry taken, counts it, and leaves it to pod-b instead of acknowledging
// it off pod-b's pending list.
func TestPausedProcessConfirmsOwnershipBeforeAcknowledging(t *testing.T) {
	t.Parallel() // about 20s, mostly the freeze
	shared, viaProxy, proxy, stream := pausable(t)
	var startedA, startedB atomic.Int32
	releaseA, releaseB := make(chan struct{}), make(chan struct{})
	closeA, closeB := sync.OnceFunc(func() { close(releaseA) }), sync.OnceFunc(func() { close(releaseB) })
	// pod-a refreshes every 10s (ReclaimIdle/3, at most 10s): no periodic
	// refresh runs between its thaw and its acknowledgement.
	a := start(t, longHandlerConfig(viaProxy, stream, "pod-a", &startedA, releaseA, 30*time.Second))
	t.Cleanup(closeA)
	id := publish(t, shared, stream, envelope("paused", platform.BetSettledConfirmed, "bet-1", 3, nil))[0]
	testkit.Eventually(t, 5*time.Second, "pod-a runs the entry", func() bool { return startedA.Load() == 1 })
	proxy.Freeze() // pod-a is cut off: as if paused
	// pod-b reclaims entries idle for 1s; pod-a's entry is idle since its
	// read (its first refresh would come 10s later).
	b := start(t, longHandlerConfig(shared, stream, "pod-b", &startedB, releaseB, time.Second))
	t.Cleanup(closeB)
	testkit.Eventually(t, 10*time.Second, "pod-b claims the entry and runs it", func() bool {
		return startedB.Load() == 1 && owner(t, shared, stream, id) == "pod-b"
	})
	// Hold the freeze until pod-a's batch has gone unrefreshed for
	// ReclaimIdle/2, as pod-a measures it.
	testkit.Eventually(t, 30*time.Second, "pod-a's batch unrefreshed for ReclaimIdle/2", func() bool {
		return consumer.UnrefreshedForTest(a.c) >= 15*time.Second
	})
	closeA() // pod-a's handler returns while it is still cut off
	proxy.Thaw()
	testkit.Eventually(t, 10*time.Second, "pod-a counts the entry taken", func() bool {
		return a.counter("headway_consumer_taken_in_flight_total", nil) == 1
	})
	leftToPodB(t, shared, stream, id, a, b, closeB)
}

// leftToPodB waits for pod-a's handler of id to return, checks that pod-a
// left the entry pending for pod-b (XACK does not check the owner), then
// lets pod-b's handler return and waits for pod-b to apply and acknowledge
// it.
func leftToPodB(t *testing.T, rdb redis.UniversalClient, stream, id string, a, b *harness, closeB func()) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, "pod-a's handler returns", func() bool {
		return a.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 1
	})
	if o := owner(t, rdb, stream, id); o != "pod-b" {
		t.Fatalf("after pod-a's handler returned the entry is owned by %q, want still pending for pod-b: pod-a acknowledged an entry it no longer held", o)
	}
	closeB()
	testkit.Eventually(t, 5*time.Second, "pod-b applies and acknowledges", func() bool {
		return b.outcome(platform.BetSettledConfirmed, consumer.OutcomeApplied) == 1 && b.pending() == 0
	})
}
